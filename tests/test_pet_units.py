"""PET/iPET units: the ensemble and iPET arithmetic (workbench.ensemble, METHODS.md section 5), the
distillation loss and soft-target training (trainer), the auxiliary language-model loss (lm_loss), and the
"targets" tensor of `collate`. Small arrays and the tiny conftest models only: each test takes seconds."""

from __future__ import annotations

import copy
import dataclasses
import math
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from workbench.errors import WorkbenchError
from workbench.prompts.encoding import EncodedExample, collate
from workbench.training import TrainerConfig, predict, train
from workbench.ensemble import (draw_labelled, ensemble_weights, merge, new_examples, per_class,
                                         pick_labellers)
from workbench.training.lm_loss import IGNORE, language_model_loss, mask_tokens, unlabeled_lm_loss
from workbench.training.trainer import distillation_loss, task_loss

from conftest import build_method


# ---- ensemble weights and merge -----------------------------------------------------------------------------

def test_wmean_weights_are_the_priors():
    assert np.array_equal(ensemble_weights([0.5, 0.25, 0.0], "wmean"), [0.5, 0.25, 0.0])


def test_mean_weights_are_uniform_whatever_the_priors():
    assert np.array_equal(ensemble_weights([0.9, 0.1, 0.3], "mean"), [1.0, 1.0, 1.0])


def test_all_zero_priors_fall_back_to_uniform_weights():
    assert np.array_equal(ensemble_weights([0.0, 0.0], "wmean"), [1.0, 1.0])


def test_unknown_reduction_is_rejected():
    with pytest.raises(ValueError, match="max"):
        ensemble_weights([1.0], "max")


def test_merge_is_the_weighted_average_of_the_scores():
    a = np.array([[1.0, 2.0], [3.0, -1.0]])
    b = np.array([[0.0, 4.0], [1.0, 1.0]])
    c = np.array([[-2.0, 0.0], [5.0, 3.0]])
    # weights 2, 1, 1 -> (2a + b + c) / 4, by hand
    expected = np.array([[(2 - 0 - 2) / 4, (4 + 4 + 0) / 4], [(6 + 1 + 5) / 4, (-2 + 1 + 3) / 4]])
    assert np.allclose(merge([a, b, c], np.array([2.0, 1.0, 1.0])), expected)
    # a zero weight leaves a model out; unnormalised weights are normalised
    assert np.allclose(merge([a, b, c], np.array([0.3, 0.1, 0.0])), (3 * a + b) / 4)
    # uniform weights: the plain mean
    assert np.allclose(merge([a, b], ensemble_weights([0.7, 0.2], "mean")), (a + b) / 2)


# ---- iPET sizes -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("labelled, generation, expected", [
    (32, 0, 128),   # 32 * 5 - 32
    (32, 1, 768),   # 32 * 25 - 32
    (32, 2, 3968),  # 32 * 125 - 32
    (0, 0, 10),     # 10 * 5^0
    (0, 1, 50),     # 10 * 5^1
    (0, 2, 250),    # 10 * 5^2
])
def test_new_examples_follow_T_times_d_power_minus_T(labelled, generation, expected):
    assert new_examples(labelled, generation, 5.0) == expected


def test_per_class_keeps_the_label_proportions_of_T():
    assert per_class([0, 0, 0, 1], 2, 8) == [6, 2]
    assert per_class([2, 0, 2, 2], 3, 40) == [10, 0, 30]  # a class T lacks gets none


def test_per_class_splits_equally_without_labels():
    assert per_class([], 2, 10) == [5, 5]
    assert per_class([], 4, 40) == [10, 10, 10, 10]


# ---- labellers --------------------------------------------------------------------------------------------------

def test_pick_labellers_excludes_the_model_and_takes_round_fraction_of_the_others():
    for seed in range(20):
        rng = np.random.default_rng(seed)
        for index in range(8):
            picked = pick_labellers(8, index, 0.25, rng)
            assert index not in picked
            assert len(picked) == 2 == len(set(picked))  # round(0.25 * 7) = 2, distinct
            assert all(0 <= m < 8 for m in picked)
    assert len(pick_labellers(9, 0, 0.5, np.random.default_rng(0))) == 4  # round(0.5 * 8)
    assert pick_labellers(5, 2, 1.0, np.random.default_rng(0)) == [0, 1, 3, 4]  # all the others


def test_pick_labellers_takes_at_least_one():
    assert len(pick_labellers(4, 1, 0.01, np.random.default_rng(0))) == 1  # round(0.03) = 0 -> 1
    assert pick_labellers(2, 0, 0.25, np.random.default_rng(0)) == [1]


def test_pick_labellers_needs_another_model():
    with pytest.raises(WorkbenchError, match="at least 2 models"):
        pick_labellers(1, 0, 0.25, np.random.default_rng(0))


def test_pick_labellers_is_deterministic_for_a_seeded_generator():
    first = [pick_labellers(12, i, 0.3, np.random.default_rng(7)) for i in range(12)]
    again = [pick_labellers(12, i, 0.3, np.random.default_rng(7)) for i in range(12)]
    assert first == again
    other_seeds = [pick_labellers(12, 0, 0.3, np.random.default_rng(s)) for s in range(10)]
    assert len({tuple(p) for p in other_seeds}) > 1  # the seed matters


# ---- draw_labelled ----------------------------------------------------------------------------------------------

def _pool_probs(n: int = 60, classes: int = 3, seed: int = 0) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(scale=2.0, size=(n, classes))
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_draw_labelled_gives_the_counts_asked_and_only_predicted_labels_without_repeats():
    probs = _pool_probs()
    predicted = probs.argmax(-1)
    available = Counter(predicted.tolist())
    counts = [min(5, available[c]) for c in range(3)]
    assert all(counts)  # every class has candidates in this pool
    drawn = draw_labelled(probs, counts, np.random.default_rng(1))
    by_class = Counter(label for _, label in drawn)
    assert [by_class[c] for c in range(3)] == counts
    for i, c in drawn:
        assert predicted[i] == c
    indices = [i for i, _ in drawn]
    assert len(indices) == len(set(indices))


def test_draw_labelled_repeats_only_when_a_class_has_too_few_candidates():
    # class 0: rows 0-3 (4 candidates), class 1: rows 4-5 (2 candidates)
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4], [0.3, 0.7], [0.45, 0.55]])
    for seed in range(10):
        drawn = draw_labelled(probs, [4, 5], np.random.default_rng(seed))
        zeros = [i for i, c in drawn if c == 0]
        ones = [i for i, c in drawn if c == 1]
        assert sorted(zeros) == [0, 1, 2, 3]  # enough candidates: each once
        assert len(ones) == 5 and set(ones) == {4, 5}  # too few: both repeated, nothing else
        assert max(Counter(ones).values()) <= math.ceil(5 / 2)


def test_draw_labelled_prefers_confident_examples():
    # four pool rows predicted as class 0 with confidence 0.99, 0.9, 0.7, 0.55; draw one many times
    probs = np.array([[0.99, 0.01], [0.9, 0.1], [0.7, 0.3], [0.55, 0.45], [0.2, 0.8]])
    hits = Counter()
    for seed in range(2000):
        (i, c), = draw_labelled(probs, [1, 0], np.random.default_rng(seed))
        assert c == 0
        hits[i] += 1
    # expected shares 0.99/3.14 = 0.315 ... 0.55/3.14 = 0.175, i.e. about 630 vs 350 (sd about 20)
    assert hits[0] > 1.4 * hits[3]
    assert hits[0] > hits[1] > hits[2] > hits[3] > 0
    assert 4 not in hits


def test_draw_labelled_is_deterministic_for_a_seed():
    probs = _pool_probs()
    assert draw_labelled(probs, [3, 3, 3], np.random.default_rng(5)) == \
        draw_labelled(probs, [3, 3, 3], np.random.default_rng(5))


def test_most_likely_takes_the_top_n_of_each_class_probability():
    probs = np.array([[0.6, 0.4], [0.95, 0.05], [0.2, 0.8], [0.7, 0.3], [0.1, 0.9], [0.45, 0.55]])
    drawn = draw_labelled(probs, [0, 0], np.random.default_rng(0), most_likely=2)
    assert sorted(i for i, c in drawn if c == 0) == [1, 3]  # 0.95, 0.7
    assert sorted(i for i, c in drawn if c == 1) == [2, 4]  # 0.8, 0.9
    assert len(drawn) == 4


def test_a_class_nothing_is_predicted_as_raises_naming_it():
    probs = np.array([[0.9, 0.1], [0.8, 0.2]])
    with pytest.raises(WorkbenchError, match="'positive'"):
        draw_labelled(probs, [1, 1], np.random.default_rng(0), label_names=["negative", "positive"])
    with pytest.raises(WorkbenchError, match="'1'"):
        draw_labelled(probs, [1, 1], np.random.default_rng(0))
    assert draw_labelled(probs, [1, 0], np.random.default_rng(0))  # a class asked for none is fine


# ---- distillation and task loss ---------------------------------------------------------------------------------

def _kl_by_hand(scores: torch.Tensor, targets: torch.Tensor, t: float) -> torch.Tensor:
    def soft(x):
        e = torch.exp(x / t - (x / t).max(-1, keepdim=True).values)
        return e / e.sum(-1, keepdim=True)
    p, q = soft(targets), soft(scores)
    return (p * (torch.log(p) - torch.log(q))).sum(-1).mean() * t * t


def test_distillation_loss_is_softened_kl_times_t_squared_averaged_over_the_batch():
    scores = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]], dtype=torch.float64)
    targets = torch.tensor([[3.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    for t in (1.0, 2.0, 3.5):
        got = distillation_loss(scores, targets, t)
        assert got.ndim == 0
        assert abs(got.item() - _kl_by_hand(scores, targets, t).item()) < 1e-6
    assert distillation_loss(scores, targets, 2.0).item() > 0
    # the teacher's own scores (shifted by a constant: same distribution) cost nothing
    assert abs(distillation_loss(targets + 4.0, targets, 2.0).item()) < 1e-9


def test_task_loss_is_cross_entropy_without_targets_and_distillation_with_them():
    scores = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]], dtype=torch.float64)
    labels = torch.tensor([0, 2])
    ce = -(torch.log_softmax(scores, -1)[torch.arange(2), labels]).mean()
    assert abs(task_loss(scores, {"labels": labels}, 2.0).item() - ce.item()) < 1e-9
    targets = torch.tensor([[3.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    with_targets = task_loss(scores, {"labels": labels, "targets": targets}, 2.0).item()
    assert abs(with_targets - _kl_by_hand(scores, targets, 2.0).item()) < 1e-6
    assert abs(with_targets - ce.item()) > 1e-3


def test_training_on_soft_targets_moves_the_output_towards_them(tiny_mlm):
    """Targets that contradict the labels: the KL to them falls, so the loss is the targets', not the labels'."""
    bb, model, data = build_method(tiny_mlm, "prompt-finetune")
    data = [dataclasses.replace(e, target=[-3.0, 3.0] if e.label == 0 else [3.0, -3.0]) for e in data]
    pad = bb.tokenizer.pad_token_id
    targets = torch.tensor([e.target for e in data])

    def kl() -> float:
        scores = torch.from_numpy(predict(model, data, pad))
        return F.kl_div(F.log_softmax(scores, -1), F.softmax(targets, -1), reduction="batchmean").item()

    before = kl()
    train(model, data, [], pad, TrainerConfig(max_steps=15, lr=1e-2, batch_size=8, progress=False))
    after = kl()
    assert after < 0.25 * before, (before, after)  # about 0.67 -> 0.015


# ---- language-model loss ----------------------------------------------------------------------------------------

def test_mask_tokens_chooses_maskable_positions_and_labels_only_them():
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 100, (6, 12), generator=gen)
    maskable = torch.rand(6, 12, generator=gen) < 0.6
    maskable[0] = False  # nothing maskable
    maskable[1] = False
    maskable[1, 7] = True  # exactly one maskable position
    maskable[2, :3] = False  # padding-like prefix
    for seed in range(20):
        inputs, labels = mask_tokens(ids, maskable, 4, 100, torch.Generator().manual_seed(seed))
        chosen = labels != IGNORE
        assert not (chosen & ~maskable).any()
        assert not chosen[0].any()
        assert chosen[1].tolist() == [i == 7 for i in range(12)]
        assert all(chosen[r].any() for r in range(1, 6))
        assert torch.equal(labels[chosen], ids[chosen])
        assert torch.equal(inputs[~chosen], ids[~chosen])  # only chosen positions are corrupted
        assert inputs.shape == ids.shape and labels.shape == ids.shape


def test_mask_tokens_follows_berts_rates():
    ids = torch.randint(5, 1000, (64, 200), generator=torch.Generator().manual_seed(1))
    maskable = torch.ones_like(ids, dtype=torch.bool)
    inputs, labels = mask_tokens(ids, maskable, 4, 1000, torch.Generator().manual_seed(2))
    chosen = labels != IGNORE
    assert 0.13 < chosen.float().mean().item() < 0.17  # 15% of 12,800
    masked = (inputs[chosen] == 4).float().mean().item()
    kept = (inputs[chosen] == ids[chosen]).float().mean().item()
    assert 0.76 < masked < 0.84 and 0.07 < kept < 0.13


def _unlabelled(backbone, texts=("it was a great movie", "the plot was dull and boring", "fun",
                                 "the actors were very bad , not funny", "i love this film", "dull story")):
    tok = backbone.tokenizer
    return [EncodedExample(tok(t)["input_ids"], 0, 0) for t in texts]


@pytest.mark.parametrize("fixture", ["tiny_mlm", "tiny_causal"])
def test_language_model_loss_is_finite_positive_and_reaches_the_weights(request, fixture):
    bb = copy.deepcopy(request.getfixturevalue(fixture))
    tok = bb.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    batch = collate(_unlabelled(bb), pad)
    assert (batch["attention_mask"] == 0).any()  # the batch has padding
    bb.model.zero_grad(set_to_none=True)
    loss = language_model_loss(bb.model, bb.kind, batch, tok, torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and math.isfinite(loss.item()) and loss.item() > 0
    loss.backward()
    emb = bb.model.get_input_embeddings().weight
    assert emb.grad is not None and emb.grad.abs().sum().item() > 0


def test_unlabeled_lm_loss_draws_the_same_batches_for_a_seed(tiny_mlm):
    bb = copy.deepcopy(tiny_mlm)
    bb.model.eval()  # no dropout: equal batches and masks give equal losses
    pool = _unlabelled(bb)
    with torch.no_grad():
        first = [unlabeled_lm_loss(bb.model, bb.kind, pool, bb.tokenizer, 2, seed=3) for _ in range(2)]
        a = [first[0]().item() for _ in range(4)]
        b = [first[1]().item() for _ in range(4)]
        other = unlabeled_lm_loss(bb.model, bb.kind, pool, bb.tokenizer, 2, seed=4)
        c = [other().item() for _ in range(4)]
    assert a == b
    assert len(set(a)) > 1  # successive calls draw new batches
    assert a != c  # another seed, other batches


def test_aux_loss_with_a_weight_changes_the_recorded_training_losses(tiny_mlm):
    bb, model, data = build_method(tiny_mlm, "prompt-finetune")
    pad = bb.tokenizer.pad_token_id

    def run(weight: float, with_aux: bool) -> list[float]:
        m = copy.deepcopy(model)
        aux = unlabeled_lm_loss(m.model, bb.kind, data, bb.tokenizer, 4, seed=0) if with_aux else None
        cfg = TrainerConfig(max_steps=3, lr=1e-3, batch_size=4, progress=False, aux_weight=weight)
        return [h["train/loss"] for h in train(m, data, [], pad, cfg, aux_loss=aux).history]

    plain = run(0.0, False)
    assert run(0.0, False) == plain  # the comparison is meaningful: same seed, same losses
    assert run(0.0, True) == plain  # weight 0: the aux loss is not mixed in
    mixed = run(0.5, True)
    assert all(math.isfinite(x) for x in mixed)
    assert all(abs(x - y) > 1e-6 for x, y in zip(mixed, plain))


# ---- collate --------------------------------------------------------------------------------------------------

def test_collate_adds_float_targets_only_when_examples_carry_them():
    plain = [EncodedExample([2, 5, 6, 3], 0, 1), EncodedExample([2, 7, 3], 0, 0)]
    out = collate(plain, 0)
    assert "targets" not in out
    soft = [dataclasses.replace(plain[0], target=[0.5, 1.5]), dataclasses.replace(plain[1], target=[-1.0, 2.0])]
    out = collate(soft, 0)
    assert out["targets"].dtype == torch.float32
    assert torch.equal(out["targets"], torch.tensor([[0.5, 1.5], [-1.0, 2.0]]))
    assert out["labels"].tolist() == [1, 0]  # the hard labels stay
