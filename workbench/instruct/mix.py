"""FLAN-style instruction mixtures: templates x tasks, examples-proportional mixing with a cap, held-out tasks.

Choices where FLAN's code and paper differ are recorded in docs/instruct.md; in short: templates are assigned
round-robin as in the code (`template_assignment="random"` gives the paper's version), the remainder batch is
kept rather than dropped, and a few-shot query left with no exemplar after pruning falls back to zero-shot.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from workbench.errors import ConfigError, WorkbenchError
from workbench.instruct import checks as C
from workbench.instruct.records import InstructionRecord, read_instruction_records
from workbench.instruct.sources import ARITHMETIC, CLASSIFICATION, CLUSTERS, SourceData, cluster_of, load_source
from workbench.instruct.templates import (
    MAX_TURNED_AROUND,
    TEMPLATES_DIR_ENV,
    TEMPLATES_PER_TASK,
    TemplateSet,
    default_templates_dir,
    load_template_set,
    render,
)

ALL_TASKS = ("sst2", "sst5", "trec", "rte", "gsm8k", "gsm8k_cot", "multiarith", "svamp")
X_Y_DELIMITER = "\n\n"  # Flan v2 defaults
EXAMPLE_SEPARATOR = "\n\n\n"


@dataclass
class MixConfig:
    tasks: tuple[str, ...] = ALL_TASKS
    holdout: tuple[str, ...] = ()  # task, dataset or cluster names
    cap: int = 3000  # examples-proportional rate = min(n, cap) (FLAN 2021)
    max_per_dataset: int = 30_000  # FLAN keeps the first 30,000 training examples of each dataset
    rates: dict[str, float] | None = None  # explicit mixing rates instead of examples-proportional
    total: int | None = None  # mixture size with explicit rates (default: the capped sum)
    zero_shot_ratio: float = 0.5  # Flan v2: zs/fs 50/50 ...
    options_ratio: float = 0.5  # ... and with/without options 50/50
    shots: tuple[int, ...] = (1, 2, 3, 5)
    token_budget: int = 960  # FLAN 2021 prunes exemplars to 960 tokens minus the query
    template_assignment: str = "round_robin"  # or "random"
    # The last K plain (not turned-around) templates of every task stay out of the mixture, so zero-shot evaluation
    # of a task that is in it can still ask in words never trained on (`workbench instruct eval`).
    holdout_templates: int = 0
    templates_dir: str | None = None
    tokenizer: str | None = None  # a model alias/path to count tokens with; default: whitespace words
    # Instruction-record files (self-instruct, Alpaca, `cot demos --format instruct`), each a task of its own named
    # after the file (or NAME=PATH); their records are used as written, zero-shot, and capped like any task.
    records: tuple[str, ...] = ()
    seed: int = 0
    out: str = "mixture"
    log_mlflow: bool = True


@dataclass
class Mixture:
    records: list[dict]
    counts: dict[str, int]
    template_counts: dict[str, dict[str, int]]
    out_dir: Path | None = None
    summary: dict = field(default_factory=dict)


def check_config(cfg: MixConfig) -> None:
    """Every check that needs no data: values, task names, template folder and output folder."""
    for flag, value in (("--cap", cfg.cap), ("--max-per-dataset", cfg.max_per_dataset),
                        ("--token-budget", cfg.token_budget)):
        C.integer(flag, value, lo=1)
    C.integer("--seed", cfg.seed)
    C.integer("--holdout-templates", cfg.holdout_templates, lo=0, hi=TEMPLATES_PER_TASK - MAX_TURNED_AROUND - 1,
              what="plain templates per task kept for evaluation; at least one stays for training")
    if cfg.total is not None:
        C.integer("--total", cfg.total, lo=1, what="the mixture size with --rates")
        if not cfg.rates:
            raise ConfigError("--total: only applies with --rates (the proportional mixture's size is the sum "
                              "of the capped task sizes); add --rates or drop --total")
    C.number("--zero-shot-ratio", cfg.zero_shot_ratio, lo=0, hi=1)
    C.number("--options-ratio", cfg.options_ratio, lo=0, hi=1)
    shots = tuple(cfg.shots) if isinstance(cfg.shots, (tuple, list)) else cfg.shots
    if (not isinstance(shots, tuple) or not shots
            or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in shots)):
        C.refuse("--shots", ",".join(map(str, shots)) if isinstance(shots, tuple) else shots,
                 "a comma-separated list of integers >= 1, e.g. 1,2,3,5")
    if cfg.template_assignment not in ("round_robin", "random"):
        C.refuse("--template-assignment", cfg.template_assignment, "round_robin or random")
    tasks = tuple(cfg.tasks)
    given = ",".join(tasks)
    if not tasks:
        C.refuse("--tasks", given, "at least one task")
    for t in tasks:
        if not isinstance(t, str) or not t.strip():
            C.refuse("--tasks", given, "comma-separated task names with none empty")
    dup = next((t for i, t in enumerate(tasks) if t in tasks[:i]), None)
    if dup is not None:
        C.refuse("--tasks", given, f"each task once ({dup!r} is given twice)")
    tdir = Path(cfg.templates_dir) if cfg.templates_dir else default_templates_dir()
    flag = "--templates-dir" if cfg.templates_dir else TEMPLATES_DIR_ENV
    if not tdir.is_dir():
        raise ConfigError(f"{flag} {tdir}: " + ("is not a folder" if tdir.exists() else "folder not found") +
                          "; expected a folder of <task>.yaml template files")
    available = sorted(p.stem for p in tdir.glob("*.yaml"))
    if cfg.rates is not None:
        if not cfg.rates:
            C.refuse("--rates", "", "name=rate pairs, e.g. sst2=1,trec=2")
        for name, rate in cfg.rates.items():
            C.number(f"--rates {name}", rate, lo=0, what="a mixing rate")
        if sum(cfg.rates.values()) <= 0:
            C.refuse("--rates", ",".join(f"{k}={v:g}" for k, v in cfg.rates.items()), "at least one rate > 0")
        if tasks != ALL_TASKS and set(tasks) != set(cfg.rates):
            raise ConfigError("--tasks: not used with --rates (the rates name the tasks); drop --tasks")
    record_names = list(record_files(cfg))
    for name in record_names:
        if name in available:
            raise ConfigError(f"--records: {name!r} is also a built-in task's name; name the file's task "
                              f"NAME=PATH")
    names = list(cfg.rates) if cfg.rates else list(tasks)
    flag_tasks = "--rates" if cfg.rates else "--tasks"
    for t in names:
        if t in record_names:
            continue
        if t not in available:
            raise ConfigError(f"{flag_tasks}: {t!r} is not allowed; expected a task with a template file in {tdir} "
                              f"({', '.join(available) or 'none there'})")
    if cfg.out is None or not str(cfg.out).strip():
        C.refuse("--out", cfg.out, "an output folder")
    C.output_folder(cfg.out, "--out")


def record_files(cfg: MixConfig) -> dict[str, Path]:
    """Task name -> file of each `--records` entry (NAME=PATH, or PATH named after the file)."""
    out: dict[str, Path] = {}
    for entry in cfg.records:
        name, sep, path = entry.partition("=")
        if not sep:
            name, path = Path(entry).stem, entry
        name = name.strip()
        if not name or not path.strip():
            C.refuse("--records", entry, "a JSON-lines file of instruction records, or NAME=PATH")
        if name in out:
            C.refuse("--records", entry, f"each task name once ({name!r} is given twice; name them NAME=PATH)")
        out[name] = Path(path)
    return out


def resolve_tasks(cfg: MixConfig) -> list[str]:
    records = [n for n in record_files(cfg) if not cfg.rates]
    tasks = list(cfg.rates) if cfg.rates else list(cfg.tasks) + records
    known = set(ALL_TASKS) | set(tasks)
    excluded: set[str] = set()
    for name in cfg.holdout:
        if name in CLUSTERS:
            excluded |= set(CLUSTERS[name])
        elif name in known or any(_dataset_name(t) == name for t in tasks):
            excluded.add(name)
        else:
            raise ConfigError(f"--holdout: {name!r} is not allowed; expected a task or dataset "
                              f"({', '.join(sorted(known))}) or a cluster ({', '.join(CLUSTERS)})")
    # Holding out a dataset also removes its variants (e.g. gsm8k removes gsm8k_cot), as FLAN removes a
    # held-out task's every template set.
    kept = [t for t in tasks if t not in excluded and _dataset_name(t) not in excluded
            and cluster_of(_dataset_name(t)) not in excluded]
    if not kept:
        raise ConfigError(f"--holdout: {','.join(cfg.holdout)!r} leaves no task in the mixture; hold out fewer tasks")
    return kept


def _dataset_name(task: str) -> str:
    return task[: -len("_cot")] if task.endswith("_cot") else task


def _word_count(text: str) -> int:
    return len(text.split())


def token_counter(name: str | None) -> Callable[[str], int]:
    if name is None:
        return _word_count
    from transformers import AutoTokenizer

    from workbench.models import ALIASES, pull

    C.model_name("--tokenizer", name)
    try:
        tok = AutoTokenizer.from_pretrained(pull(name) if name in ALIASES else name)
    except (OSError, ValueError, TypeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ConfigError(f"--tokenizer: {name!r} is not allowed; expected a model alias "
                          f"({', '.join(sorted(ALIASES))}) or a local model folder ({first})") from None
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])


def build_mixture(cfg: MixConfig, write: bool = True) -> Mixture:
    """Build (and by default write) the mixture. Every template file is validated before any data is written."""
    check_config(cfg)
    tasks = resolve_tasks(cfg)
    count_tokens = token_counter(cfg.tokenizer)  # a bad --tokenizer fails before any data is read
    tdir = Path(cfg.templates_dir) if cfg.templates_dir else default_templates_dir()
    sources: dict[str, SourceData] = {}
    plans: list[tuple[str, TemplateSet, SourceData]] = []
    record_tasks = {name: read_instruction_records(path) for name, path in record_files(cfg).items()
                    if name in tasks}
    for task in tasks:
        if task in record_tasks:
            continue
        path = tdir / f"{task}.yaml"
        header = load_template_set(path)  # structure first, then fields against the data
        if header.task != task:
            raise WorkbenchError(f"{path}: says task {header.task!r}, expected {task!r}")
        if header.dataset not in CLASSIFICATION + ARITHMETIC:
            raise ConfigError(f"{path}: dataset {header.dataset!r} is not built in; expected one of "
                              f"{', '.join(CLASSIFICATION + ARITHMETIC)}")
        if header.dataset not in sources:
            sources[header.dataset] = load_source(header.dataset, header.answers, cfg.max_per_dataset)
        src = sources[header.dataset]
        tset = load_template_set(path, set(src.fields), len(src.options) if src.options else None)
        plans.append((task, tset, src))

    counts = _counts(cfg, [(t, len(s.rows)) for t, _, s in plans] + [(t, len(r)) for t, r in record_tasks.items()])
    records: list[dict] = []
    for task, tset, src in plans:
        rng = random.Random(f"{cfg.seed}:{task}")
        records += _task_records(task, tset, src, counts[task], cfg, rng, count_tokens)
    for task, rows in record_tasks.items():
        records += _file_records(task, rows, counts[task], random.Random(f"{cfg.seed}:{task}"))
    random.Random(cfg.seed).shuffle(records)
    mixture = _summarise(records, cfg, tasks)
    if write:
        mixture.out_dir = _write(mixture, Path(cfg.out))
    if cfg.log_mlflow:
        _log(mixture, cfg)
    return mixture


def _counts(cfg: MixConfig, sizes: list[tuple[str, int]]) -> dict[str, int]:
    capped = {t: min(n, cfg.cap) for t, n in sizes}
    if not cfg.rates:
        return capped
    total = cfg.total if cfg.total is not None else sum(capped.values())
    weights = {t: float(cfg.rates[t]) for t, _ in sizes}
    if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise ConfigError("--rates: every task left after --holdout has rate 0; give one of them a rate > 0")
    # Largest remainder, so the counts add up to the total exactly.
    norm = sum(weights.values())
    exact = {t: total * w / norm for t, w in weights.items()}
    counts = {t: int(x) for t, x in exact.items()}
    for t in sorted(exact, key=lambda t: exact[t] - counts[t], reverse=True)[: total - sum(counts.values())]:
        counts[t] += 1
    return counts


def _task_records(task: str, tset: TemplateSet, src: SourceData, count: int, cfg: MixConfig,
                  rng: random.Random, count_tokens: Callable[[str], int]) -> list[dict]:
    n = len(src.rows)
    if n == 0 or count == 0:
        return []
    order = _draw(n, count, rng)
    reserved = set(eval_template_ids(tset, cfg.holdout_templates))
    usable = [t for t in tset.templates if t.template_id not in reserved]
    out = []
    for k, i in enumerate(order):
        row = src.rows[i]
        tpl = (usable[k % len(usable)] if cfg.template_assignment == "round_robin" else rng.choice(usable))
        with_options = bool(src.options) and tpl.has_options and rng.random() < cfg.options_ratio
        query_in, target = render(tpl, row.fields, src.options, with_options)
        shots, inputs = 0, query_in
        if rng.random() >= cfg.zero_shot_ratio and n > 1:
            want = rng.choice(cfg.shots)
            picks = [j for j in rng.sample(range(n), min(n, want + 1)) if j != i][:want]
            budget = cfg.token_budget - count_tokens(query_in)
            parts = []
            for j in picks:
                x, y = render(tpl, src.rows[j].fields, src.options, with_options)
                cost = count_tokens(x) + count_tokens(y)
                if cost > budget:
                    break
                budget -= cost
                parts.append(f"{x}{X_Y_DELIMITER}{y}")
            if parts:
                shots = len(parts)
                inputs = EXAMPLE_SEPARATOR.join(parts) + EXAMPLE_SEPARATOR + query_in
        out.append({
            "inputs": inputs,
            "targets": target,
            "task": task,
            "template_id": f"{task}:{tpl.template_id}",
            "turned_around": tpl.turned_around,
            "shots": shots,
            "options": list(src.options) if with_options else [],
            "format": f"{'fs' if shots else 'zs'}-{'opt' if with_options else 'noopt'}",
            "guid": f"{src.dataset}:{row.guid}",
        })
    return out


def eval_template_ids(tset: TemplateSet, k: int) -> list[int]:
    """The ids of the last `k` plain templates: kept out of a mixture built with `holdout_templates=k`."""
    plain = [t.template_id for t in tset.templates if not t.turned_around]
    return plain[len(plain) - k:] if k else []


def _draw(n: int, count: int, rng: random.Random) -> list[int]:
    """`count` indices of `n` rows without replacement; a count above n takes whole passes first (epochs)."""
    return [i for _ in range(count // n) for i in rng.sample(range(n), n)] + rng.sample(range(n), count % n)


def _file_records(task: str, rows: list[InstructionRecord], count: int, rng: random.Random) -> list[dict]:
    """Records from an instruction file, as written: no template, no exemplars."""
    return [{"inputs": rows[i].prompt(), "targets": rows[i].output, "task": task, "template_id": f"{task}:0",
             "turned_around": False, "shots": 0, "options": [], "format": "zs-noopt", "guid": f"{task}:{i}"}
            for i in (_draw(len(rows), count, rng) if rows and count else [])]


def _summarise(records: list[dict], cfg: MixConfig, tasks: list[str]) -> Mixture:
    counts = Counter(r["task"] for r in records)
    per_template: dict[str, Counter] = {t: Counter() for t in tasks}
    for r in records:
        per_template[r["task"]][r["template_id"]] += 1
    summary = {
        "total": len(records),
        "tasks": {t: counts.get(t, 0) for t in tasks},
        "held_out": list(cfg.holdout),
        "holdout_templates": cfg.holdout_templates,
        "formats": dict(Counter(r["format"] for r in records)),
        "turned_around": sum(r["turned_around"] for r in records),
        "shots": {str(k): v for k, v in sorted(Counter(r["shots"] for r in records).items())},
        "templates": {t: dict(sorted(c.items(), key=lambda kv: int(kv[0].rsplit(":", 1)[1])))
                      for t, c in per_template.items()},
    }
    return Mixture(records, summary["tasks"], summary["templates"], summary=summary)


def _write(mixture: Mixture, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    # Write beside and rename, so an interrupted run never leaves a half-written mixture in place.
    tmp = out / "mixture.jsonl.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for r in mixture.records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, out / "mixture.jsonl")
    import datasets

    ds = datasets.Dataset.from_list(mixture.records) if mixture.records else datasets.Dataset.from_dict({})
    ds.save_to_disk(str(out / "hf"))
    (out / "summary.json").write_text(json.dumps(mixture.summary, indent=2) + "\n", encoding="utf-8")
    return out


def format_summary(mixture: Mixture) -> str:
    s = mixture.summary
    lines = [f"mixture: {s['total']:,} examples" + (f" -> {mixture.out_dir}" if mixture.out_dir else "")]
    lines.append(f"{'task':<12} {'count':>7}  per template used")
    for task, n in s["tasks"].items():
        per = " ".join(str(v) for v in s["templates"][task].values())
        lines.append(f"{task:<12} {n:>7}  {per}")
    lines.append(f"formats: {s['formats']}  turned around: {s['turned_around']}  shots: {s['shots']}")
    if s["held_out"]:
        lines.append(f"held out: {', '.join(s['held_out'])}")
    return "\n".join(lines)


def _log(mixture: Mixture, cfg: MixConfig) -> None:
    from workbench.tracking import RunTracker

    params = {k: v for k, v in asdict(cfg).items() if k != "log_mlflow"}
    with RunTracker("instruct", "mix") as tracker:
        tracker.log_params(params)
        tracker.log_dict(params, "config.json")  # the full config: long values are cut in params
        metrics = {"mix/total": mixture.summary["total"]}
        metrics.update({f"mix/count/{t}": n for t, n in mixture.counts.items()})
        for task, per in mixture.template_counts.items():
            metrics.update({f"mix/template/{tid.replace(':', '/')}": n for tid, n in per.items()})
        tracker.log_metrics(metrics)
        tracker.log_dict(mixture.summary, "mix_summary.json")
