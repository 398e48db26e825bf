"""Data parallelism on CPU with the gloo backend: two processes end where one process ends at the same global batch,
and `torchrun -m workbench train` leaves exactly one MLflow run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import requires_data


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_tiny(out: str | None = None) -> dict[str, torch.Tensor]:
    """Prompt tuning of a tiny masked LM (no dropout: every process must compute what one process would) on a toy
    task, 6 steps of 8 examples; the trained parameters."""
    from transformers import BertConfig, BertForMaskedLM

    from conftest import TOY_ROWS, _wordpiece_tokenizer
    from workbench.adaptation import BuildContext, get_method
    from workbench.models import Backbone
    from workbench.prompts import PromptEncoder, Verbalizer, parse_template
    from workbench.prompts.verbalizer import label_word_ids
    from workbench.training import TrainerConfig, train

    torch.manual_seed(0)
    tok = _wordpiece_tokenizer()
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    bb = Backbone.from_model(BertForMaskedLM(cfg).eval(), tok, name="tiny-bert")
    template = parse_template('{"placeholder":"text_a"} It was {"mask"}.')
    verbalizer = Verbalizer.from_lines(["bad", "great"])
    words = label_word_ids(verbalizer, tok)
    spec = get_method("prompt-tuning")
    ctx = BuildContext(bb, None, template, verbalizer, words, None, 0)
    model = spec.build(ctx, spec.make_options(num_virtual_tokens=4))
    enc = PromptEncoder(template, tok, bb.kind, ("sentence",), 32)
    data = [enc.encode(r) for r in TOY_ROWS] * 2
    train(model, data, data, tok.pad_token_id,
          TrainerConfig(max_steps=6, lr=1e-2, batch_size=8, eval_every=3, progress=False, seed=5))
    state = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    if out is not None:
        torch.save(state, out)
    return state


def _worker(rank: int, world: int, port: int, folder: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    sys.path.insert(0, str(Path(__file__).parent))
    torch.set_num_threads(1)
    _train_tiny(os.path.join(folder, f"rank{rank}.pt"))
    import torch.distributed as dist

    from workbench.training import distributed

    # the job really ran as two: a process group of 2, each process with its half of every batch
    torch.save({"group": dist.get_world_size(), "share": distributed.share(list(range(8)), 8)},
               os.path.join(folder, f"group{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.heavy
def test_two_processes_reach_the_single_process_weights(tmp_path):
    import torch.multiprocessing as mp

    one = _train_tiny()
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert [torch.load(tmp_path / f"group{r}.pt") for r in range(2)] == [{"group": 2, "share": [0, 1, 2, 3]},
                                                                          {"group": 2, "share": [4, 5, 6, 7]}]
    for name, want in one.items():
        assert torch.equal(ranks[0][name], ranks[1][name]), name  # the processes stay identical
        assert torch.allclose(ranks[0][name], want, atol=1e-5), name  # and equal to one process on the whole batch
        assert not torch.allclose(want, torch.zeros_like(want))


def test_a_batch_that_cannot_be_shared_equally_is_refused(monkeypatch):
    from workbench.errors import ConfigError
    from workbench.training import distributed

    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "1")
    assert distributed.share(list(range(6)), 6) == [2, 3]
    with pytest.raises(ConfigError, match="8 examples cannot be shared equally by 3 processes"):
        distributed.share(list(range(8)), 8)


def _runs(db: Path) -> list:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{db}")
    return [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]


@pytest.mark.slow
@requires_data("sst2")
def test_torchrun_trains_like_one_process_and_leaves_one_run(tmp_path):
    """SST-2, 16 shots, prompt tuning on SmolLM2: two gloo processes and one process at the same global batch reach
    the same dev accuracy (within one example of the 32) and the same test accuracy; one MLflow run each."""
    torchrun = Path(sys.executable).with_name("torchrun")
    # lr 3e-3 rather than prompt tuning's 3e-2: the two runs differ by float rounding only (half batches padded to
    # their own length, a mean of two means), and Adam turns a rounding difference in a near-zero gradient into a
    # full-size step of either sign; at 3e-2 that moved 2 of the 32 dev answers, at 3e-3 it stays below one.
    common = ["train", "--method", "prompt-tuning", "--task", "sst2", "--shots", "16", "--seed", "13",
              "--max-steps", "12", "--eval-every", "6", "--batch-size", "8", "--lr", "3e-3", "--eval-split", "dev",
              "--eval-limit", "64", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    results = {}
    for name, launch in (("one", [sys.executable, "-m", "workbench"]),
                         ("two", [str(torchrun), "--nproc-per-node", "2", "--master-port", str(_free_port()), "-m",
                                  "workbench"])):
        db = tmp_path / f"{name}.db"
        out = subprocess.run([*launch, *common, "--tracking-uri", f"sqlite:///{db}"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=900)
        assert out.returncode == 0, out.stderr[-3000:]
        runs = _runs(db)
        assert len(runs) == 1, [r.info.run_name for r in runs]
        results[name] = runs[0].data.metrics
        assert out.stdout.count("MLflow run id:") == 1  # one report, from the first process
    one, two = results["one"], results["two"]
    assert abs(one["train/loss"] - two["train/loss"]) < 1e-3, (one, two)  # the last step's loss
    assert abs(one["eval/best_accuracy"] - two["eval/best_accuracy"]) <= 1 / 32 + 1e-9, (one, two)
    assert abs(one["test/accuracy"] - two["test/accuracy"]) <= 2 / 64 + 1e-9
