"""The final report of a self-instruct run: counts, rejection reasons, length, verb and similarity
distributions; printed, written beside the output, and logged to MLflow with plots."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import numpy as np

SIM_BINS = [i / 10 for i in range(11)]


def summarize(records: list[dict], state) -> dict:
    lengths = [len(r["instruction"].split()) for r in records]
    sims = [float(r.get("max_similarity", 0.0)) for r in records]
    verbs = Counter(r["instruction"].split()[0].lower().strip(",.:;") for r in records if r["instruction"].split())
    n_inst = [len(r.get("instances", [])) for r in records]
    hist, _ = np.histogram(sims, bins=SIM_BINS)
    accepted = len(records)
    return {
        "accepted": accepted,
        "candidates": state.candidates,
        "rounds": state.rounds,
        "requests": state.request_idx,
        "rejected": dict(state.reasons.most_common()),
        "classification": sum(bool(r.get("is_classification")) for r in records),
        "instances": sum(n_inst),
        "instances_with_empty_input": sum(not i["input"].strip() for r in records for i in r.get("instances", [])),
        "instruction_words": _describe(lengths),
        "instances_per_instruction": _describe(n_inst),
        "top_verbs": dict(verbs.most_common(20)),
        "max_rouge_l_histogram": {f"{lo:.1f}-{hi:.1f}": int(c) for lo, hi, c in zip(SIM_BINS, SIM_BINS[1:], hist)},
    }


def _describe(values: list[int]) -> dict:
    if not values:
        return {"mean": 0.0, "min": 0, "max": 0}
    return {"mean": round(float(np.mean(values)), 2), "min": int(min(values)), "max": int(max(values)),
            "median": float(np.median(values))}


def format_report(stats: dict) -> str:
    lines = [f"accepted {stats['accepted']} instructions ({stats['classification']} classification) with "
             f"{stats['instances']} instances, from {stats['candidates']} candidates in {stats['rounds']} rounds",
             "rejected: " + (", ".join(f"{k} {v}" for k, v in stats["rejected"].items()) or "none"),
             f"instruction words: {stats['instruction_words']}",
             "top verbs: " + ", ".join(f"{k} {v}" for k, v in list(stats["top_verbs"].items())[:10]),
             "max ROUGE-L vs pool: " + " ".join(f"{k}:{v}" for k, v in stats["max_rouge_l_histogram"].items())]
    return "\n".join(lines)


def plots(records: list[dict], stats: dict):
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    figs = {}
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.hist([r.get("max_similarity", 0.0) for r in records], bins=SIM_BINS)
    ax.set_xlabel("ROUGE-L with the most similar pool instruction")
    ax.set_ylabel("instructions")
    figs["similarity_histogram.png"] = fig
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.hist([len(r["instruction"].split()) for r in records], bins=30)
    ax.set_xlabel("instruction length (words)")
    figs["length_histogram.png"] = fig
    fig, ax = plt.subplots(figsize=(6, 3))
    verbs = list(stats["top_verbs"].items())[:20]
    ax.bar([v for v, _ in verbs], [c for _, c in verbs])
    ax.tick_params(axis="x", rotation=70)
    ax.set_ylabel("instructions")
    ax.set_title("first words")
    fig.tight_layout()
    figs["verbs.png"] = fig
    return figs


def report(records: list[dict], state, cfg) -> dict:
    stats = summarize(records, state)
    out = Path(cfg.out)
    out.with_name(out.name + ".stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    if cfg.progress:
        print(format_report(stats))
    if cfg.log_mlflow:
        from workbench.tracking import RunTracker

        params = {k: v for k, v in asdict(cfg).items() if k not in ("log_mlflow", "progress")}
        with RunTracker("instruct", f"{cfg.style}") as tracker:
            tracker.log_params(params)
            tracker.log_dict(params, "config.json")  # the full config: long values are cut in params
            metrics = {"si/accepted": stats["accepted"], "si/candidates": stats["candidates"],
                       "si/instances": stats["instances"], "si/classification": stats["classification"],
                       "si/instruction_words_mean": stats["instruction_words"]["mean"]}
            metrics.update({f"si/rejected/{k}": v for k, v in stats["rejected"].items()})
            tracker.log_metrics(metrics)
            tracker.log_dict(stats, "self_instruct_stats.json")
            import matplotlib.pyplot as plt

            for name, fig in plots(records, stats).items():
                tracker.log_figure(fig, name)
                plt.close(fig)
    return stats
