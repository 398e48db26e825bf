"""The trainer: learning on a toy problem, best-state restore, and the CUDA-only switches (checked on CPU)."""

import pytest
import torch

from workbench.prompts import PromptEncoder, Verbalizer, parse_template
from workbench.prompts.verbalizer import label_word_ids
from workbench.data import Example
from workbench.training import PromptClassifier, TrainerConfig, VerbalizerHead, predict, train
from workbench.training.trainer import _autocast, _optimizer, accuracy

from conftest import overflow_after_each_step

ROWS = [Example(f"r{i}", {"sentence": s}, y) for i, (s, y) in enumerate(
    [("great fun", 1), ("dull plot", 0), ("good film", 1), ("bad story", 0)] * 4)]


def _toy(backbone):
    words = label_word_ids(Verbalizer.from_lines(["bad", "great"]), backbone.tokenizer)
    enc = PromptEncoder(parse_template('{"placeholder":"text_a"} It was {"mask"}.'), backbone.tokenizer,
                        backbone.kind, ("sentence",), 32)
    model = PromptClassifier(backbone.model, VerbalizerHead(words.token_ids, words.class_matrix))
    return model, [enc.encode(r) for r in ROWS]


def test_training_fits_a_toy_task_and_restores_best(tiny_mlm):
    import copy

    bb = copy.deepcopy(tiny_mlm)
    model, data = _toy(bb)
    pad = bb.tokenizer.pad_token_id
    before = accuracy(predict(model, data, pad), data)
    result = train(model, data, data, pad, TrainerConfig(max_steps=40, lr=3e-3, batch_size=8, eval_every=5,
                                                         progress=False))
    after = accuracy(predict(model, data, pad), data)
    assert after == 1.0 and after > before
    assert result.best_dev == after  # the restored state is the best one seen
    assert [h["step"] for h in result.history] == list(range(1, result.steps + 1))


def test_resume_from_a_checkpoint_gives_the_uninterrupted_result(tiny_mlm):
    """A run resumed from its step-4 checkpoint (fresh model, replayed batches, dropout's random state) ends with the
    same weights, history and kept step as one that never stopped, with gradient accumulation and dev evaluations."""
    import copy

    def run(resume=None):
        bb = copy.deepcopy(tiny_mlm)
        model, data = _toy(bb)
        model.model.train()  # dropout on: the random state must be carried too
        saved = []
        cfg = TrainerConfig(max_steps=9, lr=3e-3, batch_size=4, grad_accum=2, eval_every=3, progress=False,
                            checkpoint_every=2)
        result = train(model, data, data[:6], bb.tokenizer.pad_token_id, cfg, resume=resume,
                       on_checkpoint=lambda state: saved.append(copy.deepcopy(state)))
        return model, result, saved

    whole, whole_result, checkpoints = run()
    assert [c["step"] for c in checkpoints] == [2, 4, 6, 8, 9]
    resumed, resumed_result, later = run(resume=checkpoints[1])
    assert [c["step"] for c in later] == [6, 8, 9]
    for (name, a), b in zip(whole.named_parameters(), resumed.parameters()):
        assert torch.equal(a, b), name
    def numbers(history):  # everything but the timings
        return [{k: v for k, v in h.items() if not k.endswith("_per_s")} for h in history]

    assert numbers(resumed_result.history) == numbers(whole_result.history)
    assert resumed_result.best_step == whole_result.best_step


def test_cuda_switches_without_a_gpu(tiny_mlm):
    import copy

    model, _ = _toy(copy.deepcopy(tiny_mlm))
    cfg = TrainerConfig(lr=1e-3)
    cpu = _optimizer(model, cfg, torch.device("cpu"))
    assert not cpu.defaults.get("fused")
    cuda = _optimizer(model, cfg, torch.device("cuda"))  # fused AdamW is what a CUDA run gets
    assert cuda.defaults.get("fused") is True
    assert not _autocast(torch.device("cpu"))._enabled
    cuda_autocast = _autocast(torch.device("cuda"))
    assert cuda_autocast.fast_dtype == torch.bfloat16


def test_the_step_loop_reads_losses_only_at_log_points(tiny_mlm, monkeypatch):
    """No host synchronisation per step: a step's loss stays on the device until a log point (steps 1 and 2, each
    evaluation, the end), when the pending ones are read in one transfer; every step is still logged, in order."""
    import copy
    import sys

    bb = copy.deepcopy(tiny_mlm)
    model, data = _toy(bb)
    reads = {"item": 0, "tolist": 0}
    item, tolist = torch.Tensor.item, torch.Tensor.tolist

    def counting(name, real):  # reads made by the trainer's own code (torch's CPU optimizer reads its step count)
        def read(self, *a, **k):
            if sys._getframe(1).f_code.co_filename.endswith("trainer.py"):
                reads[name] += 1
            return real(self, *a, **k)
        return read

    monkeypatch.setattr(torch.Tensor, "item", counting("item", item))
    monkeypatch.setattr(torch.Tensor, "tolist", counting("tolist", tolist))
    logged = []
    result = train(model, data, [], bb.tokenizer.pad_token_id,
                   TrainerConfig(max_steps=12, lr=1e-3, batch_size=4, eval_every=100, progress=False),
                   on_log=lambda step, record: logged.append((step, record["train/loss"])))
    assert reads == {"item": 0, "tolist": 3}  # steps 1, 2 and 12; never once per step
    assert [s for s, _ in logged] == list(range(1, 13)) == [h["step"] for h in result.history]
    assert all(isinstance(v, float) and v > 0 for _, v in logged)


@pytest.mark.parametrize("dev", [False, True], ids=["no-dev", "dev"])
def test_a_diverged_loss_is_reported_with_its_step_as_a_workbench_error(tiny_mlm, dev):
    """With or without a dev split: a FloatingPointError naming the step, and a WorkbenchError, which the CLI prints
    in one line (exit 2) and the run tracker ends the run FAILED with."""
    import copy

    from workbench.errors import WorkbenchError

    bb = copy.deepcopy(tiny_mlm)
    model, data = _toy(bb)
    with torch.no_grad():
        model.head.class_matrix.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="diverged at step 1 .*no result is reported") as e:
        train(model, data, data[:4] if dev else [], bb.tokenizer.pad_token_id,
              TrainerConfig(max_steps=5, lr=1e-3, batch_size=4, eval_every=1 if dev else 100, progress=False))
    assert isinstance(e.value, WorkbenchError)


def test_weights_that_became_non_finite_are_refused_before_they_are_scored(tiny_mlm, monkeypatch):
    """A finite loss can still push the weights to inf in the update after it (the step's loss was read before):
    the state is checked before it is evaluated, or kept when there is no dev set."""
    import copy

    from workbench.training.trainer import Diverged

    overflow_after_each_step(monkeypatch)
    for dev in (True, False):
        bb = copy.deepcopy(tiny_mlm)
        model, data = _toy(bb)
        evaluated = []
        with pytest.raises(Diverged, match="diverged at step 1 .*no longer finite"):
            train(model, data, data[:4] if dev else [], bb.tokenizer.pad_token_id,
                  TrainerConfig(max_steps=1, lr=1e-3, batch_size=4, eval_every=1, progress=False),
                  on_log=lambda step, record: evaluated.append(record))
        assert not any("eval/accuracy" in r for r in evaluated)  # no accuracy of the broken weights
