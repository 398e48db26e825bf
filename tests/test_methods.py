"""Parameter-efficient methods on tiny masked and causal LMs: trainable counts match each method's
definition, frozen weights stay bit-identical, soft tokens land in their slots, artifacts round-trip."""

import pytest
import torch

from workbench.adaptation import get_method
from workbench.errors import ConfigError
from workbench.prompts import collate
from workbench.training import TrainerConfig, train

from conftest import build_method as _setup

def _trainable(model):
    return {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("fixture", ["tiny_mlm", "tiny_causal"])
def test_prompt_tuning_trains_n_times_hidden(request, fixture):
    bb = request.getfixturevalue(fixture)
    _, model, _ = _setup(bb, "prompt-tuning", num_virtual_tokens=7)
    assert model.count_parameters()[0] == 7 * bb.hidden_size


@pytest.mark.parametrize("fixture", ["tiny_mlm", "tiny_causal"])
def test_p_tuning_counts(request, fixture):
    bb = request.getfixturevalue(fixture)
    h = bb.hidden_size
    tpl = '{"placeholder":"text_a"} It {"soft"} {"soft": "great"} was {"mask"}.'
    _, model, _ = _setup(bb, "p-tuning", tpl, prompt_encoder="none")
    assert model.count_parameters()[0] == 2 * h
    _, model, _ = _setup(bb, "p-tuning", tpl, prompt_encoder="mlp")
    assert model.count_parameters()[0] == 2 * h + 2 * (h * h + h)
    _, model, _ = _setup(bb, "p-tuning", tpl, prompt_encoder="none", tune_backbone=True)
    assert model.count_parameters()[0] == model.count_parameters()[1]
    groups = model.param_groups(1e-3)
    assert sorted(g["lr"] for g in groups) == [1e-5, 1e-3]
    assert sum(len(g["params"]) for g in groups) == len(model.trainable_parameters())


def test_p_tuning_adds_slots_before_mask(tiny_causal):
    _, model, data = _setup(tiny_causal, "p-tuning", num_soft=3, prompt_encoder="none")
    assert model.count_parameters()[0] == 3 * tiny_causal.hidden_size
    e = data[0]
    assert e.soft_slots == [e.readout - 2, e.readout - 1, e.readout]  # causal: the last tokens before the label


def test_soft_tokens_land_in_their_slots(tiny_causal):
    tpl = '{"placeholder":"text_a"} It {"soft"} {"soft"} was {"mask"}'
    bb, model, data = _setup(tiny_causal, "p-tuning", tpl, prompt_encoder="none")
    batch = collate(data[:3], bb.tokenizer.pad_token_id)
    embeds = bb.model.get_input_embeddings()(batch["input_ids"])
    out, _, readout = model.input_transform(embeds, batch)
    prompts = model.input_transform.prompts()
    for i in range(3):
        slots = batch["soft_slots"][i].tolist()
        torch.testing.assert_close(out[i, slots], prompts)
        others = [j for j in range(embeds.shape[1]) if j not in slots]
        torch.testing.assert_close(out[i, others], embeds[i, others])
    assert torch.equal(readout, batch["readout"])


def test_lora_counts_and_bad_targets(tiny_causal):
    h, layers, r = tiny_causal.hidden_size, tiny_causal.model.config.num_hidden_layers, 4
    _, model, _ = _setup(tiny_causal, "lora", r=r)
    # q_proj and v_proj, h -> h each (2 heads of 16, no grouped KV in the tiny model): A is r x h, B is h x r
    assert model.count_parameters()[0] == layers * 2 * (r * h + h * r)
    with pytest.raises(ConfigError, match=r"method.target_modules: \['query'\] do not exist"):
        _setup(tiny_causal, "lora", target_modules=["query"])


def test_bitfit_trains_biases_and_norm_gains_only_where_the_model_has_no_biases(tiny_mlm, tiny_causal):
    _, model, _ = _setup(tiny_mlm, "bitfit")  # include_norms=auto on BERT: its biases
    names = _trainable(model)
    assert names and all(n.endswith(".bias") for n in names)
    expected = sum(p.numel() for n, p in tiny_mlm.model.named_parameters() if n.endswith(".bias"))
    assert model.count_parameters()[0] == expected
    assert model.decisions["include_norms"] is False and "bias terms" in model.decisions["trains"]
    _, model, _ = _setup(tiny_mlm, "bitfit", include_norms=True)
    assert {n for n in _trainable(model) if not n.endswith(".bias")} and \
        all(n.endswith(".bias") or "norm" in n.lower() for n in _trainable(model))
    _, model, _ = _setup(tiny_causal, "bitfit")  # auto on a bias-free Llama: its norm gains
    names = _trainable(model)
    assert names and all("norm" in n for n in names)
    assert model.decisions["include_norms"] is True and "no bias terms" in model.decisions["trains"]
    with pytest.raises(ConfigError, match="has no bias terms"):
        _setup(tiny_causal, "bitfit", include_norms=False)


@pytest.mark.parametrize("fixture", ["tiny_mlm", "tiny_causal"])
def test_prefix_tuning_counts(request, fixture):
    bb = request.getfixturevalue(fixture)
    layers, h = bb.model.config.num_hidden_layers, bb.hidden_size
    _, model, _ = _setup(bb, "p-tuning-v2", num_virtual_tokens=5, head="verbalizer")
    assert model.count_parameters()[0] == 5 * layers * 2 * h


@pytest.mark.parametrize("method, options", [
    ("prompt-tuning", {"num_virtual_tokens": 4}), ("p-tuning", {"prompt_encoder": "lstm"}),
    ("prefix-tuning", {"num_virtual_tokens": 4}), ("p-tuning-v2", {"num_virtual_tokens": 4}),
    ("lora", {}), ("bitfit", {}),
])
@pytest.mark.parametrize("fixture", ["tiny_mlm", "tiny_causal"])
def test_training_changes_only_trainable_weights(request, fixture, method, options):
    bb = request.getfixturevalue(fixture)
    _, model, data = _setup(bb, method, **options)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    cfg = TrainerConfig(max_steps=3, lr=1e-2, batch_size=4, eval_every=100, progress=False)
    train(model, data, [], bb.tokenizer.pad_token_id, cfg)
    for n, p in model.named_parameters():
        if not p.requires_grad:
            assert torch.equal(p, frozen[n]), f"frozen weight {n} changed"
            assert p.grad is None, f"frozen weight {n} has a gradient"
    assert any(not torch.equal(p, before[n]) for n, p in model.named_parameters() if p.requires_grad)


def test_unknown_option_is_refused():
    with pytest.raises(ConfigError, match=r"method: unknown field\(s\) \['rank'\]") as e:
        get_method("lora").make_options(rank=4)
    assert e.value.field == "method.rank"


def test_verbalizer_head_needs_an_lm(tiny_mlm):
    from workbench.models import Backbone
    from workbench.models.backbone import ModelKind

    encoder_only = Backbone(tiny_mlm.model.bert, tiny_mlm.tokenizer, ModelKind.ENCODER, "bert-body")
    with pytest.raises(ConfigError, match="use head=linear"):
        _setup(encoder_only, "prompt-tuning")


@pytest.mark.parametrize("fixture", ["tiny_mlm", "tiny_causal"])
def test_finetune_probe_init_starts_the_head_at_a_fitted_linear_probe(request, fixture):
    """LP-FT: with head_init=probe the head, before any step, scores the training rows as a logistic regression
    fitted on the frozen body's pooled features does; the random head does not start there."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from workbench.training import predict

    bb, model, data = _setup(request.getfixturevalue(fixture), "finetune", head_init="probe")
    pad = bb.tokenizer.pad_token_id
    batch = collate(data, pad)
    model.eval()  # the body's dropout off, as when the probe was fitted
    with torch.no_grad():
        feats = model.head.features(model.model, batch["readout"], input_ids=batch["input_ids"],
                                    attention_mask=batch["attention_mask"]).float().numpy()
    labels = np.array([e.label for e in data])
    probe = LogisticRegression(max_iter=2000).fit(feats, labels)
    scores = predict(model, data, pad)
    assert (scores.argmax(-1) == probe.predict(feats)).all()
    # the two-class head is the probe's one row split in halves: score differences equal its decision function
    assert np.allclose(scores[:, 1] - scores[:, 0], probe.decision_function(feats), atol=1e-3)
    _, random_head, _ = _setup(request.getfixturevalue(fixture), "finetune")
    assert not torch.allclose(random_head.head.proj.weight, model.head.proj.weight)
