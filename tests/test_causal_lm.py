"""The language-model path of instruction tuning on a tiny Llama: the chunked loss against the plain one, the
response-only mask, rank classification, and generation through every method (a soft prompt must not be dropped
by the cache)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from workbench.adaptation import BuildContext, get_method
from workbench.instruct.tuning_data import TuningRecord, encode_record, prompt_ids
from workbench.instruct.zero_shot import EvalItem, rank_classify
from workbench.training.causal_lm import EncodedLM, InstructionModel, collate_lm
from workbench.training.linear_ce import IGNORE, linear_cross_entropy, token_logprobs
from workbench.training.trainer import LanguageModeling, TrainerConfig, _grouped_by_length, train

GENERATING = ("finetune", "lora", "prompt-tuning", "prefix-tuning", "p-tuning-v2", "bitfit")


def build(backbone, name: str, **options) -> InstructionModel:
    bb = copy.deepcopy(backbone)
    spec = get_method(name)
    opts = spec.make_options(**options)
    ctx = BuildContext(bb, None, None, None, None, None, 0, objective="generate")
    torch.manual_seed(0)
    return InstructionModel.from_built(spec.build(ctx, opts))


def records(tok) -> list[EncodedLM]:
    rows = [("Is the movie good?", "yes it was great"), ("Say something bad.", "the plot was dull"),
            ("One word.", "fun"), ("Describe the actors", "the actors were very funny and good")]
    return [encode_record(tok, TuningRecord(p, r, f"r{i}")) for i, (p, r) in enumerate(rows)]


def plain_loss(model: InstructionModel, batch) -> torch.Tensor:
    """What a user would write: the model's own loss over full logits, labels aligned with the method's inputs."""
    inputs, labels = model._inputs(batch)
    return model.model(**inputs, labels=labels).loss


@pytest.mark.parametrize("softcap", [None, 3.0])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("rows", [1, 7, 1000])
def test_chunked_loss_equals_full_loss_and_gradients(softcap, bias, rows):
    torch.manual_seed(0)
    h = torch.randn(29, 12, requires_grad=True)
    w = torch.randn(50, 12, requires_grad=True)
    b = torch.randn(50, requires_grad=True) if bias else None
    t = torch.randint(50, (29,))
    ours = linear_cross_entropy(h, w, t, b, softcap, rows)
    (0.5 * ours).backward()
    mine = [h.grad.clone(), w.grad.clone()] + ([b.grad.clone()] if bias else [])
    for p in (h, w) + ((b,) if bias else ()):
        p.grad = None
    z = h @ w.T + (b if bias else 0)
    z = softcap * torch.tanh(z / softcap) if softcap else z
    full = F.cross_entropy(z, t)
    (0.5 * full).backward()
    assert abs(ours.item() - full.item()) < 1e-5
    for got, want in zip(mine, [h.grad, w.grad] + ([b.grad] if bias else [])):
        assert torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(token_logprobs(h, w, t, b, softcap, rows), z.log_softmax(-1)[torch.arange(29), t],
                          atol=1e-5)


def test_no_labelled_position_is_refused():
    with pytest.raises(ValueError, match="no labelled positions"):
        linear_cross_entropy(torch.randn(0, 4), torch.randn(5, 4), torch.zeros(0, dtype=torch.long))


@pytest.mark.parametrize("method", GENERATING)
def test_model_loss_equals_the_plain_loss_for_every_method(tiny_causal, method):
    model = build(tiny_causal, method).eval()  # no dropout: both losses see the same network
    batch = collate_lm(records(tiny_causal.tokenizer), tiny_causal.tokenizer.pad_token_id)
    ours = model(batch)
    ours.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    plain = plain_loss(model, batch)
    plain.backward()
    assert abs(ours.item() - plain.item()) < 1e-4
    assert grads, "nothing received a gradient"
    for n, p in model.named_parameters():
        if n in grads:
            assert torch.allclose(grads[n], p.grad, atol=1e-5), n


def test_prompt_tokens_contribute_nothing(tiny_causal):
    tok = tiny_causal.tokenizer
    e = encode_record(tok, TuningRecord("Is the movie good?", "yes it was great", "r"))
    n_prompt = len(prompt_ids(tok, "Is the movie good?"))
    assert e.labels[:n_prompt] == [IGNORE] * n_prompt
    assert e.labels[n_prompt:] == e.input_ids[n_prompt:] and e.input_ids[-1] == tok.eos_token_id
    model = build(tiny_causal, "lora").eval()
    batch = collate_lm([e], tok.pad_token_id)
    logits = model.logits(batch["input_ids"], batch["attention_mask"])[0]
    # the loss is the mean over the response tokens only, each predicted from the position before it
    want = F.cross_entropy(logits[n_prompt - 1:-1], torch.tensor(e.input_ids[n_prompt:]))
    assert abs(model(batch).item() - want.item()) < 1e-5
    # a different prompt changes the context but its own tokens are never predicted: labelling them changes the loss
    labelled = collate_lm([EncodedLM(e.input_ids, e.input_ids)], tok.pad_token_id)
    assert abs(model(labelled).item() - want.item()) > 1e-3


def test_rank_classification_picks_the_highest_total_log_likelihood(tiny_causal):
    tok = tiny_causal.tokenizer
    model = build(tiny_causal, "lora")
    options = ("great", "the plot was dull and the actors bad", "fun")
    items = [EvalItem("t", "t:0", f"g{i}", p, options, 0)
             for i, p in enumerate(["it was a", "the movie was", "boring story ."])]
    picked = rank_classify(model, tok, items, batch_size=2)
    for item, k in zip(items, picked):
        ids = prompt_ids(tok, item.prompt)
        totals = []
        for option in options:
            o = tok(option, add_special_tokens=False)["input_ids"]
            full = torch.tensor([ids + o])
            logp = model.logits(full, torch.ones_like(full))[0].log_softmax(-1)
            totals.append(sum(logp[len(ids) - 1 + j, t].item() for j, t in enumerate(o)))
        assert k == max(range(len(options)), key=totals.__getitem__)


def _greedy_by_logits(model: InstructionModel, prompt: list[int], n: int, eos: int) -> list[int]:
    ids = list(prompt)
    out = []
    for _ in range(n):
        x = torch.tensor([ids])
        nxt = int(model.logits(x, torch.ones_like(x))[0, -1].argmax())
        if nxt == eos:
            break
        out.append(nxt)
        ids.append(nxt)
    return out


def _perturbed(backbone, method: str) -> InstructionModel:
    model = build(backbone, method).eval()
    with torch.no_grad():  # move the method away from its start, so what it adds decides the output
        for p in model.trainable_parameters():
            p.add_(torch.randn_like(p) * 2.0)
    return model


@pytest.mark.parametrize("method", GENERATING)
@pytest.mark.parametrize("fixture", ["tiny_causal", "tiny_gemma3"])
def test_generation_equals_the_logits_path(request, fixture, method):
    """Greedy generation (prompts of different lengths, left-padded in one batch; on Gemma 3 longer than its
    sliding window) gives the tokens the plain forward picks one at a time, for every generating method."""
    backbone = request.getfixturevalue(fixture)
    tok = backbone.tokenizer
    model = _perturbed(backbone, method)
    prompts = [prompt_ids(tok, "it was a great"), prompt_ids(tok, "the plot"),
               prompt_ids(tok, "the actors were very funny and the story was good")]
    got = model.generate(prompts, 8, [tok.eos_token_id], tok.pad_token_id)
    for prompt, tokens in zip(prompts, got):
        assert tokens == _greedy_by_logits(model, prompt, 8, tok.eos_token_id)
    # What the method adds moves the next-token logits well past the tolerance of generation's own check, so a
    # generation path that dropped it would be refused (the tiny random models often pick the same token anyway).
    x = torch.tensor([prompts[0]])
    ours = model.logits(x, torch.ones_like(x))[0, -1]
    gap = (ours - backbone.model(x).logits[0, -1]).abs().max().item()
    assert gap > 10 * 1e-3 * max(1.0, ours.abs().max().item())  # ten times the fp32 tolerance of the check


@pytest.mark.parametrize("method", ["prefix-tuning", "prompt-tuning"])
def test_generation_that_loses_the_method_is_refused(tiny_causal, method, monkeypatch):
    """Generation with the method's additions disconnected (as a library update once did to prefixes) stops with
    one line instead of answering as the base model."""
    tok = tiny_causal.tokenizer
    model = _perturbed(tiny_causal, method)
    if method == "prefix-tuning":  # the prefix's keys and values left out of the starting cache
        monkeypatch.setattr(model, "_decoder", lambda n: (model.model.get_base_model(), None, 0))
    else:  # the soft prompt left out of the embeddings
        monkeypatch.setattr(model, "_prompt_inputs", lambda prompts, pad, device: (
            {"input_ids": torch.tensor(prompts)}, torch.ones(len(prompts), len(prompts[0]), dtype=torch.long)))
    with pytest.raises(RuntimeError, match="generation does not go through the method"):
        model.generate([prompt_ids(tok, "the plot")], 4, [tok.eos_token_id], tok.pad_token_id)


@pytest.mark.slow
@pytest.mark.parametrize("method, lr, steps", [("prompt-tuning", 0.1, 25), ("prefix-tuning", 0.01, 30)])
def test_a_tuned_prompt_changes_what_the_real_model_says(method, lr, steps):
    """SmolLM2 with a 10-token soft prompt or prefix tuned on one answer: its greedy output becomes that answer,
    where the base model says something else, and generation equals the logits path."""
    from workbench.models import load_backbone

    bb = load_backbone("smollm2-135m")
    tok = bb.tokenizer
    base = InstructionModel(copy.deepcopy(bb.model))
    model = build(bb, method, num_virtual_tokens=10)
    target = encode_record(tok, TuningRecord("Name a fruit.", "Banana split forever.", "r"))
    cfg = TrainerConfig(max_steps=steps, lr=lr, batch_size=1, eval_every=1000, progress=False, warmup_ratio=0.0)
    train(model, [target], [], tok.pad_token_id, cfg, objective=LanguageModeling(tok.pad_token_id))
    prompt = [prompt_ids(tok, "Name a fruit.")]
    before = tok.decode(base.generate(prompt, 8, [tok.eos_token_id], tok.pad_token_id)[0])
    tokens = model.eval().generate(prompt, 8, [tok.eos_token_id], tok.pad_token_id)[0]
    assert tok.decode(tokens).startswith("Banana split"), tok.decode(tokens)
    assert not before.startswith("Banana split")
    assert tokens == _greedy_by_logits(model, prompt[0], 8, tok.eos_token_id)


def test_language_modeling_objective_lowers_dev_loss_and_keeps_the_best(tiny_causal):
    tok = tiny_causal.tokenizer
    model = build(tiny_causal, "finetune")
    data = records(tok) * 4
    objective = LanguageModeling(tok.pad_token_id)
    before = objective.evaluate(model, data)
    cfg = TrainerConfig(max_steps=30, lr=5e-3, batch_size=4, eval_every=5, progress=False, group_by_length=True)
    result = train(model, data, data, tok.pad_token_id, cfg, objective=objective)
    assert result.best_dev < before - 1.0
    assert abs(objective.evaluate(model, data) - result.best_dev) < 1e-5  # the kept state is the best one
    assert all("eval/loss" in h for h in result.history if h["step"] % 5 == 0)


def test_length_grouped_batches_keep_every_example():
    import random

    lengths = [random.Random(i).randint(1, 500) for i in range(203)]
    chunks = [list(range(s, min(s + 8, 200))) for s in range(0, 200, 8)]
    out = _grouped_by_length(chunks, lengths, random.Random(0), group=5)
    assert sorted(i for c in out for i in c) == list(range(200))
    assert all(len(c) == 8 for c in out)
    spread = sum(max(lengths[i] for i in c) - min(lengths[i] for i in c) for c in out)
    unsorted = sum(max(lengths[i] for i in c) - min(lengths[i] for i in c) for c in chunks)
    assert spread < unsorted / 2


def test_without_a_gpu_the_fused_kernels_stand_aside(tiny_causal):
    """Liger is CUDA-only: here nothing is patched and the chunked loss runs; the loss still reads the soft prompt
    (a fused loss that ran the model from token ids would not)."""
    from workbench.training.kernels import apply_fused_kernels, fused_linear_cross_entropy, liger_available

    assert not liger_available() and not apply_fused_kernels(tiny_causal.model)
    assert fused_linear_cross_entropy(torch.randn(3, 4), torch.randn(5, 4), torch.zeros(3, dtype=torch.long), None,
                                      None) is None
    model = build(tiny_causal, "prompt-tuning", num_virtual_tokens=4).eval()
    batch = collate_lm(records(tiny_causal.tokenizer), tiny_causal.tokenizer.pad_token_id)
    before = model(batch).item()
    with torch.no_grad():
        model.input_transform.prompt.mul_(-3.0)
    assert abs(model(batch).item() - before) > 1e-4
