"""The few-shot protocol (LM-BFF): k examples per class for training and a disjoint dev split of the
same size for model selection, both drawn from the training split with a seed."""

from __future__ import annotations

import hashlib
import os
import random
from dataclasses import dataclass
from pathlib import Path

from workbench.data.tasks import Example, TaskSpec
from workbench.errors import ConfigError, WorkbenchError
from workbench.io import sha256_file


@dataclass(frozen=True)
class FewShotSplit:
    task: str
    shots: int
    seed: int
    train: list[Example]
    dev: list[Example]

    @property
    def ids(self) -> dict[str, list[str]]:
        return {"train": [e.guid for e in self.train], "dev": [e.guid for e in self.dev]}

    @property
    def fingerprint(self) -> str:
        """A short hash of the example ids: equal fingerprints mean the same examples."""
        text = "|".join(self.ids["train"]) + "#" + "|".join(self.ids["dev"])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def few_shot_split(task: TaskSpec, shots: int, seed: int) -> FewShotSplit:
    """Deterministic in (task data, shots, seed): same arguments, same examples, on any machine. `shots=0` is the
    empty split of a zero-shot run."""
    if shots < 0:
        raise WorkbenchError(f"--shots must be at least 0, got {shots}")
    if shots == 0:
        return FewShotSplit(task=task.name, shots=0, seed=seed, train=[], dev=[])
    rows = task.load_split("train")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    by_class: dict[int, list[Example]] = {c: [] for c in range(task.num_classes)}
    for i in order:
        bucket = by_class[rows[i].label]
        if len(bucket) < 2 * shots:
            bucket.append(rows[i])
    short = {task.label_names[c]: len(b) for c, b in by_class.items() if len(b) < 2 * shots}
    if short:
        raise WorkbenchError(
            f"task {task.name!r}: {shots} train + {shots} dev examples per class needed, but the training split "
            f"has only {short}"
        )
    train = [e for c in sorted(by_class) for e in by_class[c][:shots]]
    dev = [e for c in sorted(by_class) for e in by_class[c][shots:]]
    # Interleave classes so a truncated or accumulated batch is never one class only.
    rng = random.Random(seed + 1)
    rng.shuffle(train)
    return FewShotSplit(task=task.name, shots=shots, seed=seed, train=train, dev=dev)


def check_classes(task: TaskSpec) -> None:
    """A classification task needs two classes at least: with one, every prediction is right, and the training
    loss is zero from the first step (scikit-learn and the metrics only warn)."""
    if task.num_classes < 2:
        where = f" ({task.source})" if task.source != "builtin" else ""
        raise ConfigError(f"task {task.name!r}{where}: label_names {list(task.label_names)} names "
                          f"{task.num_classes} class; a classification task needs at least two", field="task")


def check_no_leakage(task: TaskSpec, eval_split: str, shots: int, field: str | None = "eval.split") -> None:
    """The reported split must hold no row the few-shot examples are drawn from (the train split): the same split
    (`eval.split: train`), or a file that is the train file (the same path, or the same bytes). A zero-shot run
    (`shots: 0`) draws nothing, so any split is fair. `field`: the config field that chose the split (None: the
    task's own default)."""
    if shots == 0:
        return
    problem = None
    if eval_split == "train":
        problem = "is the split the few-shot training and dev examples are drawn from"
    else:
        folder = task.resolve_data_dir()
        if folder is not None and "train" in task.files and eval_split in task.files:
            train, other = folder / task.files["train"], folder / task.files[eval_split]
            if _same_path(train, other):
                problem = f"reads {task.files[eval_split]}, the train split's own file"
            elif _same_bytes(train, other):
                problem = f"reads {task.files[eval_split]}, a copy of the train split's {task.files['train']}"
    if problem is None:
        return
    source = f" ({task.source})" if task.source != "builtin" else ""
    chosen = f"{field}: " if field else f"task {task.name!r}{source}: its evaluation split "
    raise ConfigError(f"{chosen}{eval_split!r} {problem}: the evaluation rows would include training rows; "
                      f"evaluate on a split of its own (test or dev)", field=field)


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or os.path.samefile(a, b)
    except OSError:  # a file that cannot be read is the reader's to report
        return False


def _same_bytes(a: Path, b: Path) -> bool:
    """Two regular files of the same size and bytes (a copy); the digest is read only when the sizes agree."""
    try:
        if not (a.is_file() and b.is_file()) or a.stat().st_size != b.stat().st_size:
            return False
        return sha256_file(a) == sha256_file(b)
    except OSError:
        return False
