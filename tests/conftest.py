"""Shared fixtures: tiny random models with tokenizers built here (plumbing, not accuracy), and the
real offline data through WORKBENCH_DATA_DIR."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WORDS = ("the a an it is was movie film great terrible good bad not very fun dull story actors plot "
         "and but of to in this that with for as its one funny boring love hate . , ? ! ' s").split()


@pytest.fixture(scope="session")
def _migrated_store(tmp_path_factory) -> Path:
    """An empty MLflow SQLite store with every migration applied, made once per test session: creating one takes
    seconds (its schema migrations), copying it milliseconds. Its Default experiment is removed, so each copy
    creates its own, with the artifact root of the folder it is used in."""
    import sqlite3

    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM experiments")
    return path


def no_runs_in_store(folder: Path | str = ".") -> bool:
    """Whether the test's MLflow store in `folder` holds no run (read with sqlite3, not through MLflow)."""
    import sqlite3

    path = Path(folder) / "mlflow.db"
    if not path.exists():
        return True
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch, _migrated_store):
    """Every test gets its own MLflow store (a copy of the migrated empty one); data comes from ../shared/data unless
    a test says otherwise."""
    import shutil

    import mlflow

    monkeypatch.chdir(tmp_path)  # MLflow's artifact root (./mlruns) lands here, not in the repo
    shutil.copyfile(_migrated_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)  # the client is process-global; point it at this test's store
    if "WORKBENCH_DATA_DIR" not in os.environ and SHARED_DATA.exists():
        monkeypatch.setenv("WORKBENCH_DATA_DIR", str(SHARED_DATA))
    threads = torch.get_num_threads()
    yield
    # `--threads` (a local generator's) sets torch's process-wide thread count: one test must not leave every later
    # one running on a single core
    torch.set_num_threads(threads)


def overflow_after_each_step(monkeypatch) -> None:
    """Every optimizer step of the trainer ends by setting a trainable weight to inf: a finite loss, then weights that
    are not (what a too-large learning rate does in one update)."""
    import workbench.training.trainer as trainer

    real = trainer._optimizer

    def overflowing(model, cfg, device):
        opt = real(model, cfg, device)

        def overflow(optimizer, args, kwargs):
            with torch.no_grad():
                optimizer.param_groups[0]["params"][0].fill_(float("inf"))

        opt.register_step_post_hook(overflow)
        return opt

    monkeypatch.setattr(trainer, "_optimizer", overflowing)


def _wordpiece_tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *[f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"],
             *"abcdefghijklmnopqrstuvwxyz"]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(vocab))}
    tk = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tk.normalizer = normalizers.BertNormalizer(lowercase=True)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    from tokenizers import decoders

    tk.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")


def _byte_bpe_tokenizer():
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    # PPT's label words (yes / maybe / no, options A-P) as whole tokens, as a real vocabulary has them: split into
    # " " + letters they would all start with the same piece and score alike under the first-piece rule
    ppt_words = "it was yes maybe no " + " ".join("ABCDEFGHIJKLMNOP")
    corpus = [" ".join(WORDS)] * 20 + ["it was a great movie .", "the plot was dull and the actors bad ."] * 20 + \
        [ppt_words] * 20
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=400, min_frequency=1, special_tokens=["<pad>", "<eos>"])
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, pad_token="<pad>", eos_token="<eos>")


@pytest.fixture(scope="session")
def tiny_mlm():
    from transformers import BertConfig, BertForMaskedLM

    from workbench.models import Backbone

    tok = _wordpiece_tokenizer()
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    return Backbone.from_model(BertForMaskedLM(cfg).eval(), tok, name="tiny-bert")


@pytest.fixture(scope="session")
def tiny_causal():
    from transformers import LlamaConfig, LlamaForCausalLM

    from workbench.models import Backbone

    tok = _byte_bpe_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, intermediate_size=64, max_position_embeddings=128,
                      tie_word_embeddings=True, pad_token_id=tok.pad_token_id)
    return Backbone.from_model(LlamaForCausalLM(cfg).eval(), tok, name="tiny-llama")


@pytest.fixture(scope="session")
def tiny_gemma3():
    """A Gemma 3 shaped model (bias-free, grouped keys and values, a sliding-window layer of 16 tokens, far shorter
    than prompts plus what generation adds) with the byte-level tokenizer."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from workbench.models import Backbone

    tok = _byte_bpe_tokenizer()
    torch.manual_seed(0)
    cfg = Gemma3TextConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           num_key_value_heads=1, head_dim=16, intermediate_size=64, max_position_embeddings=1024,
                           sliding_window=16, layer_types=["sliding_attention", "full_attention"],
                           pad_token_id=tok.pad_token_id)
    return Backbone.from_model(Gemma3ForCausalLM(cfg).eval(), tok, name="tiny-gemma3")


@pytest.fixture()
def tiny_mlm_dir(tmp_path, tiny_mlm):
    """The tiny masked LM saved as a model folder (loaded by path, like any local model), and label words
    its vocabulary spells."""
    folder = tmp_path / "tiny-bert"
    tiny_mlm.model.save_pretrained(folder)
    tiny_mlm.tokenizer.save_pretrained(folder)
    verbalizer = tmp_path / "v.txt"
    verbalizer.write_text("bad, terrible\ngreat, good\n")
    return folder, verbalizer


def requires_data(task: str = "sst2"):
    return pytest.mark.skipif(not (SHARED_DATA / task).exists() and "WORKBENCH_DATA_DIR" not in os.environ,
                              reason="needs ../shared/data or WORKBENCH_DATA_DIR")


# ---- a toy task and the recipe's build steps, for tests of methods on the tiny models -----------------------

def _toy():
    from workbench.data import Example, TaskSpec

    task = TaskSpec(name="toy", text_fields=("sentence",), label_field="label", label_names=("neg", "pos"),
                    label_values=("0", "1"), files={}, eval_split="test")
    rows = [Example(f"r{i}", {"sentence": s}, y) for i, (s, y) in enumerate([
        ("it was a great movie", 1), ("the plot was dull", 0), ("fun and good", 1), ("bad actors , boring", 0),
        ("i love this film", 1), ("terrible story", 0), ("very funny", 1), ("not good", 0)])]
    return task, rows


TOY_TASK, TOY_ROWS = _toy()


class _ToySplit:
    train = TOY_ROWS
    dev = TOY_ROWS


def build_method(backbone, method, template='{"placeholder":"text_a"} It was {"mask"}.', **options):
    """Build `method` on a copy of the backbone the way the train recipe does: options, template rewrite,
    build, after-build hook, encoder. Returns (backbone copy, model, encoded toy rows)."""
    import copy

    from workbench.adaptation import BuildContext, get_method
    from workbench.adaptation.registry import RewriteContext
    from workbench.prompts import PromptEncoder, Verbalizer, parse_template
    from workbench.prompts.verbalizer import label_word_ids

    bb = copy.deepcopy(backbone)
    spec = get_method(method)
    opts = spec.make_options(**options)
    tpl = parse_template(template) if spec.uses_verbalizer else None
    verbalizer = Verbalizer.from_lines(["bad", "great"]) if spec.uses_verbalizer else None
    if tpl is not None and spec.rewrite_prompt:
        tpl, verbalizer = spec.rewrite_prompt(RewriteContext(opts, TOY_TASK, bb), tpl, verbalizer)
    words = label_word_ids(verbalizer, bb.tokenizer) if verbalizer else None
    ctx = BuildContext(bb, TOY_TASK, tpl, verbalizer, words, _ToySplit(), 0)
    model = spec.build(ctx, opts)
    extra = spec.extra_tokens(opts) if spec.extra_tokens else 0
    enc = PromptEncoder(tpl, bb.tokenizer, bb.kind, TOY_TASK.text_fields, 64 - extra)
    if spec.after_build:
        enc = spec.after_build(ctx, opts, model, enc)
    return bb, model, [enc.encode(r) for r in TOY_ROWS]
