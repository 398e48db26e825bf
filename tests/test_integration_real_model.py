"""Integration: the real offline model (SmolLM2-135M from its PyPI wheel) trained on real SST-2."""

import pytest

from workbench.recipes.train import RunConfig, run

from conftest import requires_data


@pytest.mark.slow
@requires_data("sst2")
def test_prompt_finetune_beats_chance_on_sst2_dev():
    # 200 rows of the real GLUE dev set: 60% correct has p < 0.003 under chance (binomial, n=200).
    cfg = RunConfig(method="prompt-finetune", task="sst2", model="smollm2-135m", shots=16, seed=13, max_steps=12,
                    eval_every=6, eval_split="dev", eval_limit=200, progress=False)
    result = run(cfg)
    assert result.test_metrics["accuracy"] >= 0.6, result.test_metrics
    assert result.trainable_fraction == pytest.approx(1.0, abs=1e-3)
