"""`train.compile`: the compiled step (the transformer body under torch.compile, batches padded to length buckets)
trains every method as the eager step does, on CPU's inductor; and `auto` compiles only where it pays."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from conftest import build_method
from workbench.adaptation import all_methods
from workbench.training import TrainerConfig, train
from workbench.training.trainer import COMPILE_MIN_STEPS, compile_plan

pytestmark = pytest.mark.heavy  # torch.compile: inductor and dynamo

TRAINING = [name for name, m in all_methods().items() if m.trains and not m.own_job]
NO_DROPOUT = {"lora": {"dropout": 0.0}, "finetune": {"dropout": 0.0}}


# Inductor (the real compiler) for one representative method: soft tokens inside the template, from a prompt
# encoder; every other method through dynamo with the eager backend, which captures the same graphs (and fails on
# the same unsupported code) without generating kernels: seconds instead of tens of seconds a method.
INDUCTOR = "p-tuning"


@pytest.mark.parametrize("name", TRAINING)
def test_compiled_steps_train_like_eager_ones(tiny_causal, name, monkeypatch):
    """Two steps and a dev evaluation, from the same start: the same losses, dev accuracy and trained weights, with
    the padding of length buckets in between (random dropout masks would differ between the two: none here)."""
    if name != INDUCTOR:
        real = torch.compile
        monkeypatch.setattr(torch, "compile", lambda fn, **kw: real(fn, **{**kw, "backend": "eager", "mode": None}))
    _, model, data = build_method(tiny_causal, name, **NO_DROPOUT.get(name, {}))
    twin = copy.deepcopy(model)
    pad = tiny_causal.tokenizer.pad_token_id
    runs = []
    for m, mode in ((model, "off"), (twin, "max")):
        cfg = TrainerConfig(max_steps=2, lr=1e-2, batch_size=4, eval_every=2, progress=False, compile=mode)
        runs.append(train(m, data, data[:4], pad, cfg))
    eager, compiled = runs
    assert eager.compiled_graphs == 0 < compiled.compiled_graphs
    for a, b in zip(eager.history, compiled.history):
        assert math.isclose(a["train/loss"], b["train/loss"], rel_tol=1e-4, abs_tol=1e-5), (a, b)
    assert eager.best_dev == compiled.best_dev
    for (n, p), q in zip(model.named_parameters(), twin.parameters()):
        if p.requires_grad:
            assert torch.allclose(p, q, atol=1e-4), n
    # the body is eager again once the run ends
    from workbench.training.trainer import transformer_body

    assert "forward" not in vars(transformer_body(twin))


def test_auto_compiles_only_long_runs_on_cuda():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not compile_plan("auto", cpu, 10**6)  # inductor on CPU does not repay its compile time here
    assert not compile_plan("auto", cuda, 30)  # a few-shot run: compiling costs more than it saves
    assert compile_plan("auto", cuda, COMPILE_MIN_STEPS)
    assert compile_plan("max", cpu, 1) and not compile_plan("off", cuda, 10**6)
    with pytest.raises(ValueError, match="expected one of"):
        compile_plan("fast", cpu, 1)
