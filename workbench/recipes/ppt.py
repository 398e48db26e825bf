"""`workbench ppt pretrain`: pre-train a soft prompt on unlabelled text (PPT, Gu et al. 2022) for any prompt-tuning
run on the same model to start from.

The job, in order:
1. check everything the user gave (corpus, format, output folder, a labelling run, the tracking store) before
   the model loads;
2. build the pre-training examples from the corpus (for `cls`, score sentences and keep the confident pseudo
   labels), written to `OUT/examples.jsonl` once, so a resumed job does not score them again;
3. train only the prompt on the frozen model, reading the answer with the label-word head (no vocabulary logits),
   keeping the prompt that scores best on held-out pre-training examples; a checkpoint every
   `checkpoint_every` steps (`OUT/checkpoint.pt`) lets the same command resume after a stop;
4. write the prompt artifact (`OUT/prompt.safetensors`, `OUT/ppt.json`) and log it to the MLflow run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from workbench.config.fields import BATCH_MAX, LR_MAX, ROWS_MAX, SEED_MAX, STEPS_MAX, TOKENS_MAX, Section, option
from workbench.config import DEFAULT_MODEL
from workbench.data.tasks import Example
from workbench.errors import ConfigError, WorkbenchError
from workbench.ppt.artifact import ARTIFACT_DIR, META_FILE, RUN_ID, save_prompt
from workbench.ppt.formats import FORMATS

STATE_FILE = "state.json"
EXAMPLES_FILE = "examples.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"
RUN_KIND = "ppt-pretrain"
ZERO_SHOT = "zero-shot"


@dataclass
class PretrainConfig(Section):
    section: ClassVar[str] = "ppt"
    corpus: str = option("", role="study", help="unlabelled text: a .txt/.md file or folder (documents separated by "
                                                "top-level headings or blank lines), JSON lines, or a dataset saved "
                                                "with datasets' save_to_disk")
    out: str = option("", role="neutral", help="folder for the prompt artifact, its examples and checkpoints; "
                                               "running again with the same folder resumes")
    model: str = option(DEFAULT_MODEL, role="study", help="the frozen model the prompt is trained for")
    format: str = option("cls", role="study", choices=tuple(FORMATS),
                         help="nsp: sentence pairs (3 classes); nss: next sentence among 6 options; cls: single "
                              "sentences with 5 pseudo labels; unified: multiple choice with 2-16 options")
    prompt_tokens: int = option(100, min=1, max=1024, help="soft tokens in the prompt (PPT: 100)")
    steps: int = option(500, min=1, max=STEPS_MAX, role="budget", help="training steps")
    batch_size: int = option(16, min=1, max=BATCH_MAX, role="budget", help="examples per step")
    lr: float = option(3e-2, above=0, max=LR_MAX, help="learning rate of the prompt (AdamW, linear warm-up and decay)")
    warmup_ratio: float = option(0.05, min=0, max=1, help="share of steps spent warming up the learning rate")
    examples: int = option(8000, min=2, max=ROWS_MAX, role="budget",
                           help="pre-training examples to build (cls: sentences to pseudo-label, of which the "
                                "confident ones are kept)")
    heldout: int = option(200, min=1, max=ROWS_MAX, role="budget",
                          help="examples held out to measure the prompt and keep its best "
                               "state")
    eval_every: int = option(50, min=1, max=STEPS_MAX, help="steps between held-out evaluations")
    checkpoint_every: int = option(25, min=1, max=STEPS_MAX, role="neutral",
                                   help="steps between checkpoints (resume points)")
    max_seq_length: int = option(512, min=8, max=TOKENS_MAX,
                                 help="tokens per example, prompt included; a query is shortened to fit, "
                                      "an example whose options alone do not fit is left out")
    init: str = option("vocab", choices=("vocab", "random"),
                       help="how the prompt starts: embeddings of common tokens, or uniform(-0.5, 0.5)")
    labeler: str = option(ZERO_SHOT, help="cls only: where the pseudo labels come from: zero-shot (the model's own "
                                          "calibrated scores) or the MLflow run id of a 5-class classifier trained "
                                          "with `workbench train` (e.g. finetune on sst5)")
    min_confidence: float = option(0.5, min=0, max=1,
                                   help="cls only: keep a sentence when its label's probability is at least this")
    text_field: str = option("text", help="the text field of JSON-lines records and datasets")
    seed: int = option(0, min=0, max=SEED_MAX, help="seed of example building, prompt initialisation and batch order")
    experiment: str = option("ppt", role="neutral", help="MLflow experiment")
    tracking_uri: str | None = option(None, role="neutral", help="MLflow tracking URI (default: sqlite:///mlflow.db)")
    progress: bool = option(True, role="neutral", help="progress bars")

    def check(self) -> None:
        for name in ("corpus", "out"):
            if not getattr(self, name).strip():
                raise ConfigError(f"ppt.{name}: required; give --{name} PATH", field=f"ppt.{name}")
        if self.labeler != ZERO_SHOT and not RUN_ID.fullmatch(self.labeler):
            raise ConfigError(f"ppt.labeler: {self.labeler!r} is neither {ZERO_SHOT!r} nor an MLflow run id "
                              f"(32 hex digits)", field="ppt.labeler")
        if self.labeler != ZERO_SHOT and self.format != "cls":
            raise ConfigError(f"ppt.labeler: only format cls has pseudo labels; format {self.format!r} builds its "
                              f"labels from the documents", field="ppt.labeler")
        if self.heldout >= self.examples:
            raise ConfigError(f"ppt.heldout: {self.heldout} held-out examples leave none of the {self.examples} to "
                              f"train on; raise --examples or lower --heldout", field="ppt.heldout")

    def identity(self) -> dict:
        """The fields that decide the prompt: a folder started with other values cannot be resumed with these."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata["role"] != "neutral"}


@dataclass
class PretrainResult:
    out: Path
    run_id: str
    heldout_accuracy: float
    examples: int  # training examples
    examples_per_s: float  # training throughput
    steps: int
    resumed_from: int  # the step a stopped job went on from (0: a fresh start)
    labels: dict  # cls: kept sentences per pseudo label


def pretrain_prompt(cfg: PretrainConfig, log: Callable[[str], None] | None = None) -> PretrainResult:
    from workbench.models import resolve_model
    from workbench.ppt.corpus import read_corpus
    from workbench.ppt.formats import build_examples, cls_candidates, get_format
    from workbench.tracking import check_tracking_uri
    from workbench.training.trainer import read_checkpoint

    say = log or (lambda _: None)
    fmt = get_format(cfg.format)
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"ppt.out: {out} is a file; give a folder", field="ppt.out")
    if not out.parent.is_dir():
        raise ConfigError(f"ppt.out: folder {out.parent} does not exist", field="ppt.out")
    state = _read_state(out, cfg)
    if state.get("done") and (out / META_FILE).is_file():
        say(f"{out}: already pre-trained with these settings (MLflow run {state['run_id']}); nothing to do")
        return PretrainResult(out, state["run_id"], state["heldout_accuracy"], state["train_examples"],
                              state["examples_per_s"], cfg.steps, cfg.steps, state.get("labels", {}))
    # The resume point is read first, before the corpus and any weights: a refused file costs nothing, and
    # read_checkpoint never runs code from it (weights_only)
    checkpoint = out / CHECKPOINT_FILE
    resume = read_checkpoint(checkpoint) if checkpoint.is_file() else None
    examples_path = out / EXAMPLES_FILE
    if not examples_path.is_file():  # the corpus is read (and checked) before anything loads
        docs = read_corpus(cfg.corpus, cfg.text_field)
        built = cls_candidates(docs, cfg.examples, cfg.seed) if fmt.name == "cls" else \
            build_examples(docs, fmt, cfg.examples, cfg.seed, cfg.corpus)
        if len(built) <= cfg.heldout:
            raise ConfigError(f"--corpus {cfg.corpus}: only {len(built)} {fmt.name} examples can be built, not more "
                              f"than the {cfg.heldout} held out; give a larger corpus or lower --heldout",
                              field="ppt.corpus")
        say(f"corpus: {len(docs)} documents, {sum(len(d.sentences) for d in docs):,} sentences; "
            f"{len(built):,} {'sentences to label' if fmt.name == 'cls' else 'examples'}")
    uri = check_tracking_uri(cfg.tracking_uri)
    labeler = _fetch_labeler(cfg) if fmt.name == "cls" and cfg.labeler != ZERO_SHOT and not examples_path.is_file() \
        else None
    ref = resolve_model(cfg.model)
    if ref.kind.value == "encoder":
        raise ConfigError(f"ppt.model: {cfg.model!r} has no LM head to read an answer word from; use a masked or "
                          f"causal LM", field="ppt.model")
    out.mkdir(exist_ok=True)
    if not state:  # claimed for these settings before anything else is written into it
        state = {"config": cfg.identity()}
        _write_json(out / STATE_FILE, state)
    return _run(cfg, fmt, out, state, ref, uri, labeler, None if examples_path.is_file() else built, resume, say)


def _read_state(out: Path, cfg: PretrainConfig) -> dict:
    """The folder's state (empty for a new folder); a folder started with other settings is refused, naming the
    first setting that differs."""
    path = out / STATE_FILE
    if not path.is_file():
        if out.is_dir() and any(out.iterdir()):
            raise ConfigError(f"ppt.out: {out} is not empty and holds no {STATE_FILE}; give a new or empty folder",
                              field="ppt.out")
        return {}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise WorkbenchError(f"{path}: not readable ({e}); remove the folder to start again") from None
    before = state.get("config", {})
    for name, value in cfg.identity().items():
        if before.get(name) != value:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"ppt.{name}: {out} was started with {flag} {before.get(name)}, not {value}; run with "
                              f"the same settings to resume it, or give another --out", field=f"ppt.{name}")
    return state


def _write_json(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def _fetch_labeler(cfg: PretrainConfig):
    """The labelling run's model folder and config, checked (5 classes, one text field) before any model loads."""
    import tempfile

    from workbench.data import get_task
    from workbench.runs.saved import fetch_run, saved_config

    folder = fetch_run(cfg.labeler, cfg.tracking_uri, Path(tempfile.mkdtemp(prefix="ppt-labeler-")))
    run_cfg = saved_config(folder)
    task = get_task(run_cfg.task)
    if task.num_classes != len(FORMATS["cls"].words) or len(task.text_fields) != 1:
        raise ConfigError(f"ppt.labeler: run {cfg.labeler} classifies {task.name!r} ({task.num_classes} classes, "
                          f"{len(task.text_fields)} text fields); format cls needs a single-sentence classifier with "
                          f"5 classes, e.g. one trained on sst5", field="ppt.labeler")
    return folder, run_cfg, task


def pseudo_label(candidates: list[Example], cfg: PretrainConfig, backbone, labeler, encoder_for) -> tuple[
        list[Example], dict]:
    """cls: a label for each sentence whose probability reaches `min_confidence`, from the labelling run, or from
    the model's own zero-shot scores on the cls template. Zero-shot scores are calibrated first (each class's mean
    log-probability over the sentences is removed: a small LM says one word far more often than the others, and
    its raw labels would be nearly all one class), and each class keeps at most an equal share, most confident
    first."""
    import numpy as np

    from workbench.training import predict

    if labeler is not None:
        from workbench.runs.saved import rebuild

        folder, run_cfg, task = labeler
        prepared = rebuild(folder, run_cfg)
        field = task.text_fields[0]
        enc = [prepared.encoder.encode(Example(e.guid, {field: e.fields["text_a"]}, 0)) for e in candidates]
        scores = predict(prepared.model, enc, prepared.encoder.tokenizer.pad_token_id, progress=cfg.progress,
                         desc="labelling")
        rule = f"run {cfg.labeler} ({task.name}), p >= {cfg.min_confidence}"
    else:
        model, encoder = encoder_for(backbone)
        enc = [encoder.encode(e) for e in candidates]
        scores = predict(model, enc, encoder.tokenizer.pad_token_id, progress=cfg.progress, desc="labelling")
        shifted = scores - scores.max(-1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
        scores = log_probs - log_probs.mean(0, keepdims=True)
        rule = f"zero-shot, calibrated, p >= {cfg.min_confidence}, at most an equal share per class"
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    labels, conf = probs.argmax(-1), probs.max(-1)
    classes = probs.shape[1]
    share = len(candidates) // classes if labeler is None else len(candidates)
    kept: list[Example] = []
    for c in range(classes):
        idx = [i for i in np.argsort(-conf) if labels[i] == c and conf[i] >= cfg.min_confidence][:share]
        kept += [Example(candidates[i].guid, candidates[i].fields, c) for i in idx]
    kept.sort(key=lambda e: int(e.guid.rsplit("-", 1)[1]))  # back in the seeded shuffle's order
    counts = {FORMATS["cls"].words[c]: sum(e.label == c for e in kept) for c in range(classes)}
    return kept, {"rule": rule, "scored": len(candidates), "kept": counts}


def _encode(encoder, rows: list[Example]) -> list:
    out = []
    for row in rows:
        try:
            out.append(encoder.encode(row))
        except ConfigError:  # only shortenable text is cut; options that alone exceed the length cannot be
            continue
    return out


def _run(cfg: PretrainConfig, fmt, out: Path, state: dict, ref, uri: str, labeler, built, resume: dict | None,
         say) -> PretrainResult:
    import torch

    from workbench.adaptation.registry import BuildContext
    from workbench.adaptation.soft_prompts.modules import PrependedPrompt, init_prompt
    from workbench.models import load_backbone
    from workbench.ppt.formats import pretrain_template, pretrain_verbalizer, text_fields
    from workbench.prompts import PromptEncoder
    from workbench.prompts.encoding import special_affixes
    from workbench.prompts.verbalizer import label_word_ids
    from workbench.tracking import RunTracker, flatten_params
    from workbench.training import PromptClassifier, TrainerConfig, train
    from workbench.training.heads import VerbalizerHead
    from workbench.training.trainer import pick_device

    backbone = load_backbone(ref)
    tokenizer = backbone.tokenizer
    template, verbalizer = pretrain_template(fmt), pretrain_verbalizer(fmt)
    words = label_word_ids(verbalizer, tokenizer, "first")  # a word the vocabulary splits is read by its first piece
    max_length = min(cfg.max_seq_length, backbone.max_length) - cfg.prompt_tokens
    if max_length < 8:
        raise ConfigError(f"ppt.prompt_tokens: {cfg.prompt_tokens} soft tokens leave {max_length} of "
                          f"{min(cfg.max_seq_length, backbone.max_length)} positions for the text; use fewer",
                          field="ppt.prompt_tokens")
    encoder = PromptEncoder(template, tokenizer, ref.kind, text_fields(fmt), max_length)
    device = pick_device()

    def head() -> VerbalizerHead:
        return VerbalizerHead(words.token_ids, words.class_matrix)

    examples_path = out / EXAMPLES_FILE
    labels = state.get("labels", {})
    if built is not None:
        if fmt.name == "cls":
            built, labels = pseudo_label(built, cfg, backbone, labeler,
                                         lambda bb: (PromptClassifier(bb.model, head()).to(device), encoder))
            say(f"pseudo labels ({labels['rule']}): {labels['kept']} of {labels['scored']} sentences")
            if len(built) <= cfg.heldout:
                raise WorkbenchError(f"only {len(built)} sentences passed --min-confidence {cfg.min_confidence}, not "
                                     f"more than the {cfg.heldout} held out; lower --min-confidence or raise "
                                     f"--examples")
        tmp = examples_path.with_name(EXAMPLES_FILE + ".tmp")
        tmp.write_text("".join(json.dumps({"guid": e.guid, "fields": e.fields, "label": e.label}) + "\n"
                               for e in built))
        os.replace(tmp, examples_path)
    rows = [Example(**json.loads(line)) for line in examples_path.read_text(encoding="utf-8").splitlines()]
    heldout, train_rows = rows[: cfg.heldout], rows[cfg.heldout:]

    ctx = BuildContext(backbone, None, template, verbalizer, words, None, cfg.seed)
    for p in backbone.model.parameters():
        p.requires_grad_(False)
    insert_at = len(special_affixes(tokenizer)[0])
    torch.manual_seed(cfg.seed)
    prompt = PrependedPrompt(init_prompt(ctx, cfg.prompt_tokens, cfg.init, cfg.seed), insert_at)
    model = PromptClassifier(backbone.model, head(), prompt).to(device)
    train_enc, heldout_enc = _encode(encoder, train_rows), _encode(encoder, heldout)
    left_out = len(rows) - len(train_enc) - len(heldout_enc)
    if left_out:
        say(f"{left_out} of {len(rows)} examples do not fit in {max_length} tokens with their options and were left "
            f"out (--max-seq-length {cfg.max_seq_length}, {cfg.prompt_tokens} of them the prompt's)")
    if not train_enc or not heldout_enc:
        raise ConfigError(f"ppt.max_seq_length: no {fmt.name} example fits in {max_length} tokens besides the "
                          f"prompt; raise --max-seq-length", field="ppt.max_seq_length")
    trainer = TrainerConfig(max_steps=cfg.steps, lr=cfg.lr, batch_size=cfg.batch_size, warmup_ratio=cfg.warmup_ratio,
                            eval_every=cfg.eval_every, seed=cfg.seed, progress=cfg.progress,
                            checkpoint_every=cfg.checkpoint_every, weight_decay=0.01)
    checkpoint = out / CHECKPOINT_FILE
    resumed_from = resume["step"] if resume else 0
    meta = {"model": cfg.model, "identity": ref.identity, "format": fmt.name, "template": template.text,
            "words": list(fmt.words), "multi_token": "first", "labels": labels, "config": cfg.identity()}
    tags = {"kind": RUN_KIND, "model": cfg.model, "format": fmt.name,
            **{f"model/{k}": str(v) for k, v in ref.identity.items()}}
    name = f"ppt-{fmt.name}-{cfg.model.replace('/', '_')}-p{cfg.prompt_tokens}"
    with RunTracker(cfg.experiment, name, uri, tags=tags, resume_run_id=state.get("run_id")) as tracker:
        state = {**state, "config": cfg.identity(), "run_id": tracker.run_id, "labels": labels}
        _write_json(out / STATE_FILE, state)
        if not resumed_from:
            tracker.log_params(flatten_params({"ppt": {**cfg.identity(), "train_examples": len(train_rows),
                                                       "labels": labels.get("rule", "-")}}))
            if labels:
                tracker.log_dict(labels, "pseudo_labels.json")
        say(f"pre-training: {cfg.steps} steps of {cfg.batch_size} on {len(train_rows):,} {fmt.name} examples, "
            f"{cfg.prompt_tokens} soft tokens"
            + (f"; resuming at step {resumed_from}" if resumed_from else "") + f" (MLflow run {tracker.run_id})")

        def save_checkpoint(snapshot: dict) -> None:
            tmp = checkpoint.with_name(CHECKPOINT_FILE + ".tmp")
            torch.save(snapshot, tmp)
            os.replace(tmp, checkpoint)

        started = time.perf_counter()
        fit = train(model, train_enc, heldout_enc, tokenizer.pad_token_id, trainer,
                    on_log=lambda step, metrics: tracker.log_metrics(metrics, step), resume=resume,
                    on_checkpoint=save_checkpoint)
        rate = fit.examples_per_s
        save_prompt(out, prompt.prompt, {**meta, "steps": fit.steps, "best_step": fit.best_step,
                                         "heldout_accuracy": fit.best_dev, "run_id": tracker.run_id})
        tracker.log_metrics({"eval/best_accuracy": fit.best_dev, "best_step": fit.best_step,
                             "train/examples_per_s": rate, "train/seconds": time.perf_counter() - started,
                             "train_examples": len(train_rows)}, step=fit.steps)
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            for f in ("prompt.safetensors", META_FILE):
                (Path(tmp) / f).write_bytes((out / f).read_bytes())
            tracker.log_artifacts(tmp, ARTIFACT_DIR)
        state.update(done=True, heldout_accuracy=fit.best_dev, train_examples=len(train_rows),
                     examples_per_s=rate)
        _write_json(out / STATE_FILE, state)
        checkpoint.unlink(missing_ok=True)
        say(f"pre-training throughput: {rate:.1f} examples/s (label-word head); held-out accuracy "
            f"{fit.best_dev:.4f} at step {fit.best_step} of {fit.steps} (that prompt kept)")
        return PretrainResult(out, tracker.run_id, fit.best_dev, len(train_rows), rate, fit.steps,
                              resumed_from, labels)
