"""Auto-CoT's demonstration builder (Zhang et al. 2023; METHODS.md section 3), apart from generation:

1. every pool question is encoded as "Q: <question>\\nA:" by a sentence encoder (mean pooling over tokens, then
   unit length, as all-MiniLM-L6-v2's own pipeline does);
2. k-means with k = the number of demonstrations (scikit-learn, `random_state` = the seed, 10 restarts);
3. in each cluster, questions in ascending distance to the centre, and the first whose Zero-shot-CoT rationale
   passes the rules (`rule_failure`) becomes the cluster's demonstration. A cluster with none is left without.

The demo file keeps the published layout, `{"demo": [{question, rationale, pred_ans, gold_ans}]}` with
`question` as "Q: ...\\nA:" and the rationale on one line starting with "Let's think step by step."; a `meta`
entry beside it records the task, k, seed, encoder and each demonstration's cluster, so a file can be checked
against the task it is used with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench import io
from workbench.cot.prompts import Demo, question_block
from workbench.errors import ConfigError

MAX_QUESTION_WORDS = 60
MAX_RATIONALE_STEPS = 5
KMEANS_RESTARTS = 10


@dataclass(frozen=True)
class PoolItem:
    """One pool question with its Zero-shot-CoT output."""
    qid: str
    question: str
    gold: str
    rationale: str  # "Let's think step by step. ..." as generated (lines kept)
    pred: str  # the cleansed answer of the second stage


def rule_failure(question: str, rationale: str, pred: str, arithmetic: bool) -> str | None:
    """Why a (question, rationale, answer) cannot be a demonstration, or None when it can (Auto-CoT's rules)."""
    if len(question_block(question).split()) > MAX_QUESTION_WORDS:
        return f"question over {MAX_QUESTION_WORDS} words"
    if len(steps(rationale)) > MAX_RATIONALE_STEPS:
        return f"rationale over {MAX_RATIONALE_STEPS} steps"
    if not rationale.rstrip().endswith("."):
        return "rationale does not end with '.'"
    if not pred:
        return "no answer"
    if arithmetic:  # the answer must be where the rationale concludes: its last sentence or last 10 words
        sentences = rationale.rstrip().split(".")
        last = sentences[-2] if len(sentences) > 1 else sentences[0]
        if pred not in last and pred not in " ".join(rationale.split()[-10:]):
            return "answer not in the rationale's conclusion"
    return None


def steps(rationale: str) -> list[str]:
    """Reasoning steps as Auto-CoT counts them: lines, after collapsing blank lines."""
    return rationale.strip().replace("\n\n", "\n").split("\n")


def flatten(rationale: str) -> str:
    return " ".join(rationale.replace("\n", " ").split())


def encode(texts: list[str], model, tokenizer, batch_size: int = 64) -> np.ndarray:
    """Sentence embeddings: mean of the last hidden states over real tokens, scaled to unit length."""
    import torch

    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=256,
                            return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            out.append(torch.nn.functional.normalize(mean, dim=-1).float().numpy())
    return np.concatenate(out)


def cluster(embeddings: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(cluster of each row, distance of each row to its cluster's centre)."""
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, random_state=seed, n_init=KMEANS_RESTARTS).fit(embeddings)
    distances = np.linalg.norm(embeddings - km.cluster_centers_[km.labels_], axis=1)
    return km.labels_, distances


@dataclass
class Selection:
    demos: list[dict]  # the demo file's entries, in cluster order
    clusters: list[int]  # each demonstration's cluster
    indices: list[int]  # each demonstration's position in the pool
    empty: list[int]  # clusters with no question passing the rules
    labels: np.ndarray
    distances: np.ndarray


def select(pool: list[PoolItem], labels: np.ndarray, distances: np.ndarray, k: int, arithmetic: bool) -> Selection:
    demos, chosen, picked, empty = [], [], [], []
    for c in range(k):
        members = sorted(np.flatnonzero(labels == c), key=lambda i: (distances[i], i))
        for i in members:
            item = pool[i]
            if rule_failure(item.question, item.rationale, item.pred, arithmetic) is None:
                demos.append({"question": question_block(item.question), "rationale": flatten(item.rationale),
                              "pred_ans": item.pred, "gold_ans": item.gold})
                chosen.append(c)
                picked.append(int(i))
                break
        else:
            empty.append(c)
    return Selection(demos, chosen, picked, empty, labels, distances)


def write_demo_file(path: Path, selection: Selection, meta: dict) -> None:
    data = {"demo": selection.demos, "meta": {**meta, "clusters": selection.clusters, "empty_clusters": selection.empty}}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)  # never a half-written demo file


def read_demo_file(path: str | Path, task: str | None = None, flag: str = "--demos") -> list[Demo]:
    """Demonstrations from a file in Auto-CoT's layout (ours, or one of the published ones). A file whose `meta`
    names another task is refused."""
    path = Path(path)
    where = f"{flag} {path}"
    if not path.is_file():
        raise ConfigError(f"{where}: no such file")
    try:
        data = json.loads(io.read_bytes(path, "demonstrations file").decode("utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{where}: not readable ({e})") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{where}: line {e.lineno}: not JSON ({e.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("demo"), list) or not data["demo"]:
        raise ConfigError(f"{where}: expected {{\"demo\": [{{question, rationale, pred_ans, gold_ans}}, ...]}} with "
                          f"at least one demonstration")
    made_for = (data.get("meta") or {}).get("task") if isinstance(data.get("meta"), dict) else None
    if task is not None and made_for is not None and made_for != task:
        raise ConfigError(f"{where}: the demonstrations were built for task {made_for!r}, not {task!r}; build them "
                          f"for this task with `workbench cot demos --task {task}`")
    demos = []
    for k, d in enumerate(data["demo"]):
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: demo {k}: expected an object")
        for key in ("question", "rationale", "pred_ans"):
            if not isinstance(d.get(key), str) or (key != "rationale" and not d[key].strip()):
                raise ConfigError(f"{where}: demo {k}: field {key!r} is missing or not a non-empty string")
        demos.append(Demo(bare_question(d["question"]), d["rationale"].strip(), d["pred_ans"].strip()))
    return demos


def bare_question(text: str) -> str:
    """A demo file's question without the "Q: " and "\nA:" around it."""
    text = text.strip()
    text = text[3:] if text.startswith("Q: ") else text
    return text[:-3].rstrip() if text.endswith("\nA:") else text


def plot_clusters(path: Path, embeddings: np.ndarray, labels: np.ndarray, chosen: list[int], k: int,
                  title: str) -> None:
    """A 2-D PCA scatter of the pool, one colour per cluster, each demonstration marked with a star."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    xy = PCA(n_components=2, random_state=0).fit_transform(embeddings) if len(embeddings) > 2 else \
        np.pad(embeddings[:, :2], ((0, 0), (0, max(0, 2 - embeddings.shape[1]))))
    fig, ax = plt.subplots(figsize=(7, 6))
    cmap = plt.get_cmap("tab10" if k <= 10 else "tab20")
    for c in range(k):
        pts = xy[labels == c]
        ax.scatter(pts[:, 0], pts[:, 1], s=12, color=cmap(c % cmap.N), alpha=0.6, label=f"cluster {c}")
    if chosen:
        ax.scatter(xy[chosen, 0], xy[chosen, 1], s=220, marker="*", color="black", label="demonstration")
    ax.set_title(title)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def demo_to_instruct(demo: dict, task: str) -> dict:
    """A demonstration as an instruction-tuning record (the fields `workbench instruct mix --records` reads)."""
    return {"instruction": bare_question(demo["question"]), "input": "",
            "output": f"{demo['rationale']} The answer is {demo['pred_ans']}.", "source": f"auto-cot:{task}"}
