"""Prompts of the five CoT modes, in the layout of Kojima et al. and Auto-CoT:

- zero-shot: `Q: <q>\\nA: The answer (arabic numerals) is` and the answer read from what follows;
- zero-shot-cot: `Q: <q>\\nA: Let's think step by step.` gives a rationale z; then the same text + z + the
  task's trigger (`\\nTherefore, the answer (arabic numerals) is`) gives the answer (two stages);
- few-shot: demonstrations `Q: <q>\\nA: The answer is <a>.` and a blank line each, then `Q: <q>\\nA:`;
- manual-cot: the same with a written rationale before "The answer is";
- auto-cot: Auto-CoT's demonstrations (`<Q: q\\nA:> <rationale> The answer is <a>.`), then
  `Q: <q>\\nA: Let's think step by step.`.

Every question of a few-shot mode starts with the same demonstration text, which the local generator computes
once (`LocalBackend`'s shared-prefix cache).
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.config.yaml_io import parse_yaml
from workbench.cot.answers import FEW_SHOT_ANSWER, cot_trigger, direct_trigger
from workbench.resources import cot_exemplars_file

MODES = ("zero-shot", "zero-shot-cot", "few-shot", "manual-cot", "auto-cot")
DEMO_MODES = ("few-shot", "manual-cot", "auto-cot")  # modes that read demonstrations
STEP_BY_STEP = "Let's think step by step."


@dataclass(frozen=True)
class Demo:
    question: str  # the bare question (no "Q:")
    rationale: str  # "" for few-shot without CoT
    answer: str


def question_block(question: str) -> str:
    return f"Q: {question}\nA:"


def demo_text(demos: list[Demo], with_rationale: bool) -> str:
    parts = []
    for d in demos:
        middle = f" {d.rationale}" if with_rationale and d.rationale else ""
        parts.append(f"{question_block(d.question)}{middle} {FEW_SHOT_ANSWER} {d.answer}.\n\n")
    return "".join(parts)


def first_prompt(mode: str, question: str, answer_type: str, demos: list[Demo]) -> str:
    """What the model continues first: the answer (zero-shot, few-shot) or the rationale (the CoT modes)."""
    q = question_block(question)
    if mode == "zero-shot":
        return f"{q} {direct_trigger(answer_type)}"
    if mode == "zero-shot-cot":
        return f"{q} {STEP_BY_STEP}"
    if mode == "few-shot":
        return demo_text(demos, with_rationale=False) + q
    if mode == "manual-cot":
        return demo_text(demos, with_rationale=True) + q
    if mode == "auto-cot":
        return demo_text(demos, with_rationale=True) + f"{q} {STEP_BY_STEP}"
    raise ValueError(f"unknown mode {mode!r}")


def answer_prompt(first: str, rationale: str, answer_type: str) -> str:
    """Zero-shot-CoT's second stage: the question, the rationale it produced, and the trigger."""
    return f"{first}{rationale} {cot_trigger(answer_type)}"  # the space before the trigger is the reference's


def manual_demos(task: str, answer_type: str) -> list[Demo] | None:
    """The project's own Manual-CoT exemplars for a built-in task (None for a task they do not fit)."""
    source = cot_exemplars_file()
    data = parse_yaml(source.read_text("utf-8"), str(source)).data
    key = "aqua" if answer_type == "letter" and task == "aqua" else "arithmetic" if answer_type == "number" else None
    if key is None:
        return None
    return [Demo(d["question"], d["rationale"], str(d["answer"])) for d in data[key]]
