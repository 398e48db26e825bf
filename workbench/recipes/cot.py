"""Chain-of-thought jobs: `build_demos` (Auto-CoT demonstrations) and `evaluate_cot` (the five prompting modes).

Both take a generator (`workbench.instruct.backends`: a local model, or any OpenAI-compatible server), so a user
with a stronger model behind a server runs the same protocol as the offline models here.

build_demos, in order:
1. check the task, the output and (when it exists) the pool file of an earlier run, before anything loads;
2. Zero-shot-CoT on the pool (the task's first `limit` questions): a rationale, then the answer stage; each
   finished chunk is appended to `<out>.pool.jsonl`, so a stopped job loses at most one chunk and a rerun goes on;
3. sentence embeddings, k-means, per-cluster selection by the rules (`workbench.cot.demos`);
4. the demo file (or, with `format=instruct`, instruction records) and a PNG of the clusters beside it.

evaluate_cot: prompts by mode, generation, answer extraction (two stages for zero-shot-CoT), cleansing,
exact match; predictions are appended to `out` every few questions (`PREDICT_CHUNK`: a rerun resumes, a stop loses
at most those) and logged to one MLflow run.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import ClassVar

from workbench.config.fields import ROWS_MAX, SEED_MAX, TOKENS_MAX, Section, option
from workbench.cot.answers import extract
from workbench.cot.prompts import DEMO_MODES, MODES, STEP_BY_STEP, Demo, answer_prompt, first_prompt, manual_demos
from workbench.cot.tasks import CotTask, Question, load_cot_task
from workbench.errors import ConfigError, WorkbenchError

RATIONALE_STOP = ("\nQ:",)  # zero-shot-CoT: a small model runs on into a new question of its own
FEW_SHOT_STOP = ("\n\n", "\nQ:")  # demonstrations end with a blank line; so does the answer to the question
ANSWER_STOP = ("\n",)
ANSWER_MAX_TOKENS = 32  # the answer stage (Kojima et al.)
CHUNK = 32  # Auto-CoT's pool: questions per generator call, the unit of resuming (and of the prefix cache's reuse)
# evaluate_cot: questions per generator call, their predictions appended as soon as they are answered, so a stop
# (SIGTERM, Ctrl-C, a server gone) loses at most these; 8 is one batch of the local generator's default
PREDICT_CHUNK = 8
RUN_KIND = "cot-eval"


def _say(log: Callable[[str], None] | None) -> Callable[[str], None]:
    return log or (lambda _: None)


def _check_output(path: str, flag: str) -> Path:
    out = Path(path)
    if out.is_dir():
        raise ConfigError(f"{flag}: {out} is a folder; give a file name", field=f"cot.{flag[2:]}")
    if not out.parent.is_dir():
        raise ConfigError(f"{flag}: folder {out.parent} does not exist", field=f"cot.{flag[2:]}")
    return out


def _jsonl_lines(path: Path) -> list[dict]:
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = []
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if no == len(lines):  # the last line, cut by a stop mid-write: its question is generated again, and
                # the cut text goes, or the next row would be appended onto it
                tmp = path.with_name(path.name + ".tmp")
                tmp.write_text("".join(line + "\n" for line in lines[:no - 1]), encoding="utf-8")
                tmp.replace(path)
                break
            raise WorkbenchError(f"{path}: line {no}: not JSON; remove the file to start again") from None
    return rows


def _append(path: Path, rows: list[dict]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
        f.flush()


def _resume(path: Path, header: dict, what: str) -> list[dict]:
    """Rows already written by an earlier run with the same settings (the first line); other settings are refused,
    naming the first that differs."""
    if not path.is_file() or path.stat().st_size == 0:
        path.write_text(json.dumps({"header": header}) + "\n", encoding="utf-8")
        return []
    rows = _jsonl_lines(path)
    before = rows[0].get("header") if rows and isinstance(rows[0], dict) else None
    if not isinstance(before, dict):
        raise WorkbenchError(f"{path}: not a {what} file of this tool (no header line); remove it or choose "
                             f"another output")
    for key, value in header.items():
        if before.get(key) != value:
            raise ConfigError(f"{path}: was started with {key} {before.get(key)!r}, not {value!r}; run with the same "
                              f"settings to resume it, or remove it / choose another output")
    return rows[1:]


# ---- Zero-shot-CoT, shared by demo building and evaluation ---------------------------------------------------

def _zero_shot_cot(backend, questions: list[Question], answer_type: str, decoding) -> list[tuple[str, str]]:
    """(rationale starting with "Let's think step by step.", cleansed answer) for each question."""
    firsts = [first_prompt("zero-shot-cot", q.question, answer_type, []) for q in questions]
    zs = [c.text for c in backend.complete(firsts, replace(decoding, stop=RATIONALE_STOP))]
    answers = backend.complete([answer_prompt(f, z, answer_type) for f, z in zip(firsts, zs)],
                               replace(decoding, max_tokens=ANSWER_MAX_TOKENS, temperature=0.0, stop=ANSWER_STOP))
    return [(f"{STEP_BY_STEP} {z.strip()}".rstrip(), extract(a.text, answer_type, few_shot=False))
            for z, a in zip(zs, answers)]



# ---- Auto-CoT demonstrations ---------------------------------------------------------------------------------

@dataclass
class CotDemosConfig(Section):
    section: ClassVar[str] = "cot"
    task: str = option("", role="study", help="a built-in CoT task (multiarith, gsm8k, svamp, addsub, singleeq, "
                                              "aqua) or a task YAML file")
    out: str = option("demos.json", role="neutral",
                      help="the demo file; beside it <out>.pool.jsonl (the rationales, for resuming) and <out>.png")
    k: int | None = option(None, min=1, max=256,
                           help="clusters = demonstrations (default: the task's, 8 for arithmetic, 4 "
                                "for AQuA)")
    encoder: str = option("minilm-l6", role="study", help="sentence encoder for clustering (mean pooling)")
    limit: int | None = option(None, min=1, max=ROWS_MAX, role="budget",
                               help="the task's first N questions form the pool "
                                    "(default: all)")
    max_tokens: int = option(256, min=1, max=TOKENS_MAX, role="budget", help="tokens of each Zero-shot-CoT rationale")
    seed: int = option(192, min=0, max=SEED_MAX, help="k-means seed (Auto-CoT's default 192)")
    format: str = option("demo", choices=("demo", "instruct"), role="neutral",
                         help="demo: Auto-CoT's demo file; instruct: JSON lines of instruction records (every pool "
                              "rationale that passes the rules and reaches the gold answer) for `workbench instruct "
                              "mix --records`")
    progress: bool = option(True, role="neutral", help="progress bars")

    def check(self) -> None:
        if not self.task.strip():
            raise ConfigError("cot.task: required; give --task NAME or a task YAML file", field="cot.task")


@dataclass
class DemosResult:
    out: Path
    demos: list[dict]
    clusters: list[int]
    empty_clusters: list[int]
    pool: int
    generated: int  # rationales generated by this call (the rest were read back)
    plot: Path


def build_demos(cfg: CotDemosConfig, backend, log: Callable[[str], None] | None = None, *,
                encoder=None) -> DemosResult:
    """Auto-CoT demonstrations for `cfg.task` from `backend`'s Zero-shot-CoT rationales. `encoder` is a
    (model, tokenizer) pair to use instead of loading `cfg.encoder`."""
    from workbench.cot import demos as D

    say = _say(log)
    task, out, k, questions = check_demos(cfg)
    pool_path = out.with_name(out.name + ".pool.jsonl")
    header = {"task": task.name, "generator": backend.name, "max_tokens": cfg.max_tokens}
    done = {r["qid"]: r for r in _resume(pool_path, header, "rationale pool")}
    for q in questions:  # the same task and file order: a row of the pool file belongs to this question
        if q.qid in done and done[q.qid]["question"] != q.question:
            raise WorkbenchError(f"{pool_path}: question {q.qid} differs from the task's; remove the file to start "
                                 f"again")
    todo = [q for q in questions if q.qid not in done]
    if done:
        say(f"{pool_path}: {len(done)} rationales kept from an earlier run; {len(todo)} to generate")
    encoder = encoder or _load_encoder(cfg.encoder)  # a bad encoder name fails before generation starts
    _generate_pool(backend, task, todo, cfg, pool_path, done, say)

    pool = [D.PoolItem(q.qid, q.question, q.gold, done[q.qid]["rationale"], done[q.qid]["pred"]) for q in questions]
    say(f"encoding {len(pool)} questions with {cfg.encoder}")
    embeddings = D.encode([f"Q: {p.question}\nA:" for p in pool], *encoder)
    labels, distances = D.cluster(embeddings, k, cfg.seed)
    selection = D.select(pool, labels, distances, k, arithmetic=task.answer_type == "number")
    if not selection.demos:
        raise WorkbenchError(f"no pool question of {task.name} has a rationale that passes the demo rules "
                             f"(<= {D.MAX_QUESTION_WORDS} words, <= {D.MAX_RATIONALE_STEPS} steps, ends with '.', an "
                             f"answer); a larger --limit or a stronger generator may find some")
    if selection.empty:
        say(f"warning: cluster(s) {selection.empty} have no question passing the rules; {len(selection.demos)} "
            f"demonstrations instead of {k}")
    meta = {"task": task.name, "k": k, "seed": cfg.seed, "encoder": cfg.encoder, "pool": len(pool),
            "generator": backend.name, "pool_ids": [p.qid for p in pool]}
    if cfg.format == "demo":
        D.write_demo_file(out, selection, meta)
    else:
        chosen = set(selection.indices)
        records = [{**D.demo_to_instruct({"question": p.question, "rationale": D.flatten(p.rationale),
                                          "pred_ans": p.pred}, task.name), "demonstration": i in chosen}
                   for i, p in enumerate(pool)
                   if p.pred == p.gold and D.rule_failure(p.question, p.rationale, p.pred,
                                                          task.answer_type == "number") is None]
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
        tmp.replace(out)
        say(f"{len(records)} of {len(pool)} pool rationales pass the rules and reach the gold answer")
    plot = out.with_suffix(".png") if out.suffix != ".png" else out.with_name(out.name + ".clusters.png")
    D.plot_clusters(plot, embeddings, labels, selection.indices, k,
                    f"Auto-CoT {task.name}: {len(pool)} questions, k={k}, seed {cfg.seed}")
    return DemosResult(out, selection.demos, selection.clusters, selection.empty, len(pool), len(todo), plot)


def check_demos(cfg: CotDemosConfig) -> tuple[CotTask, Path, int, list[Question]]:
    """Everything that needs no model: the task and its file, the output, the pool size. The CLI calls it before
    a model loads or a server is reached."""
    task = load_cot_task(cfg.task, "--task")
    out = _check_output(cfg.out, "--out")
    k = cfg.k or task.demos
    questions = list(task.questions[:cfg.limit] if cfg.limit else task.questions)
    if len(questions) < k:
        raise ConfigError(f"cot.limit: {len(questions)} questions cannot form {k} clusters; raise --limit or lower "
                          f"--k", field="cot.limit" if cfg.limit else "cot.k")
    return task, out, k, questions


def _load_encoder(name: str):
    from workbench.models import load_backbone, resolve_model

    try:
        ref = resolve_model(name)
    except WorkbenchError as e:
        raise ConfigError(f"cot.encoder: {str(e).splitlines()[0]}", field="cot.encoder") from None
    bb = load_backbone(ref, kind="encoder")
    return bb.model.eval(), bb.tokenizer


def _generate_pool(backend, task: CotTask, todo: list[Question], cfg: CotDemosConfig, pool_path: Path,
                   done: dict, say) -> None:
    from tqdm.auto import tqdm

    from workbench.instruct.backends import Decoding

    if not todo:
        return
    decoding = Decoding(max_tokens=cfg.max_tokens, temperature=0.0)
    with tqdm(total=len(todo), desc="zero-shot-CoT rationales", unit="q", disable=not cfg.progress) as bar:
        for start in range(0, len(todo), CHUNK):
            chunk = todo[start:start + CHUNK]
            rows = [{"qid": q.qid, "question": q.question, "gold": q.gold, "rationale": r, "pred": p}
                    for q, (r, p) in zip(chunk, _zero_shot_cot(backend, chunk, task.answer_type, decoding))]
            _append(pool_path, rows)  # kept before the next chunk starts: a stop loses at most this chunk's work
            done.update({r["qid"]: r for r in rows})
            bar.update(len(chunk))


# ---- evaluation ----------------------------------------------------------------------------------------------

@dataclass
class CotEvalConfig(Section):
    section: ClassVar[str] = "cot"
    task: str = option("", role="study", help="a built-in CoT task (multiarith, gsm8k, svamp, addsub, singleeq, "
                                              "aqua) or a task YAML file")
    mode: str = option("zero-shot-cot", role="study", choices=MODES,
                       help="zero-shot | zero-shot-cot (two stages) | few-shot | manual-cot | auto-cot")
    demos: str = option("", role="study", help="demo file (Auto-CoT's layout): required for auto-cot; for few-shot "
                                               "and manual-cot it replaces the built-in exemplars")
    self_consistency: int = option(1, min=1, max=1024, role="budget",
                                   help="rationales sampled per question, answer by majority vote (1: greedy)")
    temperature: float = option(0.7, min=0, max=1000, help="sampling temperature with --self-consistency above 1")
    limit: int | None = option(None, min=1, max=ROWS_MAX, role="budget",
                               help="evaluate the task's first N questions only")
    max_tokens: int = option(256, min=1, max=TOKENS_MAX, role="budget",
                             help="tokens of each rationale (or answer, zero-shot)")
    out: str = option("", role="neutral", help="predictions file (JSON lines), appended as questions finish; a rerun "
                                               "with the same settings resumes it (default: cot_<task>_<mode>.jsonl)")
    seed: int = option(0, min=0, max=SEED_MAX, help="sampling seed (self-consistency)")
    experiment: str = option("cot", role="neutral", help="MLflow experiment")
    tracking_uri: str | None = option(None, role="neutral", help="MLflow tracking URI (default: sqlite:///mlflow.db)")
    progress: bool = option(True, role="neutral", help="progress bars")

    def check(self) -> None:
        if not self.task.strip():
            raise ConfigError("cot.task: required; give --task NAME or a task YAML file", field="cot.task")
        if self.demos and self.mode not in DEMO_MODES:
            raise ConfigError(f"cot.demos: mode {self.mode} reads no demonstrations; drop --demos or use one of "
                              f"{', '.join(DEMO_MODES)}", field="cot.demos")
        if self.mode == "auto-cot" and not self.demos:
            raise ConfigError("cot.demos: mode auto-cot needs a demo file; build one with `workbench cot demos "
                              "--task TASK --out demos.json` and pass --demos demos.json", field="cot.demos")


@dataclass
class CotEvalResult:
    accuracy: float
    correct: int
    total: int
    run_id: str
    out: Path
    seconds: float  # generation time of this call (questions read back from `out` cost none)


def evaluate_cot(cfg: CotEvalConfig, backend, log: Callable[[str], None] | None = None) -> CotEvalResult:
    from workbench.tracking import RunTracker
    from workbench.tracking.runs import check_tracking_uri

    say = _say(log)
    task, demos, out = check_eval(cfg)
    uri = check_tracking_uri(cfg.tracking_uri)
    questions = list(task.questions[:cfg.limit] if cfg.limit else task.questions)
    header = {"task": task.name, "mode": cfg.mode, "generator": backend.name,
              "demos": _digest(demos), "self_consistency": cfg.self_consistency, "max_tokens": cfg.max_tokens,
              "temperature": cfg.temperature if cfg.self_consistency > 1 else 0.0, "seed": cfg.seed}
    done = {r["qid"]: r for r in _resume(out, header, "predictions")}
    todo = [q for q in questions if q.qid not in done]
    if done:
        say(f"{out}: {len(done)} questions kept from an earlier run; {len(todo)} to go")
    tags = {"kind": RUN_KIND, "task": task.name, "mode": cfg.mode, "generator": backend.name}
    with RunTracker(cfg.experiment, f"{task.name}-{cfg.mode}", uri, tags=tags) as tracker:
        tracker.log_params({"cot": {**{k: v for k, v in asdict(cfg).items() if k not in ("progress",)},
                                    "task_file": task.source, "questions": len(questions)}})
        if demos:
            tracker.log_dict({"demo": [asdict(d) for d in demos]}, "demos.json")
        started = time.perf_counter()
        _predict(backend, task, cfg, demos, todo, out, done)
        seconds = time.perf_counter() - started
        rows = [done[q.qid] for q in questions]
        correct = sum(r["correct"] for r in rows)
        accuracy = correct / len(rows)
        tracker.log_metrics({"eval/accuracy": accuracy, "eval/correct": correct, "eval/questions": len(rows),
                             "eval/seconds": seconds})
        tracker.log_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "predictions.jsonl")
        say(f"{task.name} {cfg.mode}: {correct}/{len(rows)} = {accuracy:.4f} (MLflow run {tracker.run_id})")
        return CotEvalResult(accuracy, correct, len(rows), tracker.run_id, out, seconds)


def check_eval(cfg: CotEvalConfig) -> tuple[CotTask, list[Demo], Path]:
    """Everything that needs no model: the task, its demonstrations, the predictions file, the tracking store."""
    from workbench.tracking.runs import check_tracking_uri

    task = load_cot_task(cfg.task, "--task")
    demos = _demos_for(cfg, task)
    out = _check_output(cfg.out or f"cot_{task.name}_{cfg.mode}.jsonl", "--out")
    check_tracking_uri(cfg.tracking_uri)
    return task, demos, out


def _demos_for(cfg: CotEvalConfig, task: CotTask) -> list[Demo]:
    from workbench.cot.demos import read_demo_file

    if cfg.mode not in DEMO_MODES:
        return []
    if cfg.demos:
        demos = read_demo_file(cfg.demos, task.name)
        if cfg.mode == "manual-cot" and not any(d.rationale for d in demos):
            raise ConfigError(f"cot.demos: {cfg.demos} has no rationales; manual-cot needs them", field="cot.demos")
        return demos
    demos = manual_demos(task.name, task.answer_type)
    if demos is None:
        raise ConfigError(f"cot.demos: no built-in exemplars fit task {task.name} (answer type {task.answer_type}); "
                          f"give --demos FILE", field="cot.demos")
    return demos


def _digest(demos: list[Demo]) -> str:
    return hashlib.sha256(json.dumps([asdict(d) for d in demos]).encode()).hexdigest()[:16] if demos else ""


def _predict(backend, task: CotTask, cfg: CotEvalConfig, demos: list[Demo], todo: list[Question], out: Path,
             done: dict) -> None:
    from tqdm.auto import tqdm

    from workbench.instruct.backends import Decoding

    n = cfg.self_consistency
    decoding = Decoding(max_tokens=cfg.max_tokens, temperature=cfg.temperature if n > 1 else 0.0, seed=cfg.seed)
    chunk_size = PREDICT_CHUNK  # questions, each with its n samples: the loss on a stop counts in questions
    with tqdm(total=len(todo), desc=f"{task.name} {cfg.mode}", unit="q", disable=not cfg.progress) as bar:
        for start in range(0, len(todo), chunk_size):
            chunk = todo[start:start + chunk_size]
            samples = [q for q in chunk for _ in range(n)]
            if cfg.mode == "zero-shot-cot":
                outputs = _zero_shot_cot(backend, samples, task.answer_type, decoding)
            else:
                few_shot = cfg.mode != "zero-shot"
                stop = FEW_SHOT_STOP if few_shot else ANSWER_STOP
                max_tokens = cfg.max_tokens if cfg.mode != "zero-shot" else min(cfg.max_tokens, ANSWER_MAX_TOKENS)
                texts = backend.complete([first_prompt(cfg.mode, q.question, task.answer_type, demos)
                                          for q in samples], replace(decoding, stop=stop, max_tokens=max_tokens))
                outputs = [(c.text.strip(), extract(c.text, task.answer_type, few_shot)) for c in texts]
            rows = []
            for j, q in enumerate(chunk):
                mine = outputs[j * n:(j + 1) * n]
                prediction = majority([p for _, p in mine])
                rows.append({"qid": q.qid, "question": q.question, "gold": q.gold, "prediction": prediction,
                             "correct": prediction == q.gold, "rationale": mine[0][0],
                             **({"samples": [{"rationale": r, "answer": p} for r, p in mine]} if n > 1 else {})})
            _append(out, rows)
            done.update({r["qid"]: r for r in rows})
            bar.update(len(chunk))


def majority(answers: list[str]) -> str:
    """The most frequent non-empty answer; a tie goes to the one sampled first ('' when none has an answer)."""
    counts = Counter(a for a in answers if a)
    if not counts:
        return ""
    best = max(counts.values())
    return next(a for a in answers if a and counts[a] == best)
