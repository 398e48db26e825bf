"""The few-shot protocol (LM-BFF): k examples per class for training and a disjoint dev split of the
same size for model selection, both drawn from the training split with a seed."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from workbench.errors import WorkbenchError
from workbench.data.registry import Example, TaskSpec


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
