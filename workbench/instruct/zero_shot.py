"""Zero-shot evaluation, FLAN style: a task is asked through its instruction templates (only those a tuned model
never saw), classification tasks are answered by rank classification, open ones by generation and exact match.

Rank classification: each answer option is scored by the total log-likelihood of its tokens after the prompt,
and the option with the highest score is the prediction (FLAN's scoring; no option is favoured for being short or
long, as the options of a task are one or two words). The options are listed in the prompt (`{options_}`), as in
FLAN's evaluation. Open tasks (arithmetic): the model's greedy answer, its first number against the gold one.

A task's accuracy is the mean over its templates, as FLAN reports it; each template's is kept too.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from workbench.errors import ConfigError
from workbench.instruct.sources import ARITHMETIC, CLASSIFICATION
from workbench.instruct.templates import default_templates_dir, load_template_set, render
from workbench.instruct.tuning_data import end_ids, prompt_ids
from workbench.training.causal_lm import EncodedLM, InstructionModel, collate_lm
from workbench.training.linear_ce import IGNORE
from workbench.training.trainer import length_batches

EVAL_TASKS = CLASSIFICATION + ARITHMETIC
TRAINED_ON_TEST = ("multiarith", "svamp")  # the mixture reads their only (test) file: none left to evaluate on


@dataclass(frozen=True)
class EvalItem:
    task: str
    template_id: str  # "task:k"
    guid: str
    prompt: str
    options: tuple[str, ...] | None  # classification: the answer options in label order; None: open answer
    gold: int | str  # the label index, or the normalised answer


@dataclass
class TaskScore:
    task: str
    accuracy: float  # the mean over templates
    per_template: dict[str, float]
    rows: int  # examples per template
    predictions: list[dict] = field(default_factory=list)


def usable_templates(task: str, trained: dict[str, list[str]] | None, templates_dir: str | Path | None = None):
    """The template set of `task` and its plain templates that were not trained on (`trained`: task -> template ids
    a tuning run's data used). Refused when none is left, or when the task's only data was in the tuning data."""
    if task not in EVAL_TASKS:
        raise ConfigError(f"--tasks: {task!r} cannot be evaluated zero-shot; tasks: {', '.join(EVAL_TASKS)}")
    seen = set((trained or {}).get(task, []))
    if seen and task in TRAINED_ON_TEST:
        raise ConfigError(f"--tasks: {task} was in the tuning data, which reads its only file (the test set); "
                          f"hold it out of the mixture to evaluate on it")
    folder = Path(templates_dir) if templates_dir else default_templates_dir()
    tset = load_template_set(folder / f"{task}.yaml")
    plain = [t for t in tset.templates if not t.turned_around and f"{task}:{t.template_id}" not in seen]
    if not plain:
        raise ConfigError(f"--tasks: every template of {task} was trained on; evaluate it after a mixture built with "
                          f"--holdout-templates K (the last K templates stay out) or with {task} held out")
    return tset, plain


def eval_items(task: str, limit: int | None, trained: dict[str, list[str]] | None = None,
               templates_dir: str | Path | None = None) -> list[EvalItem]:
    """Every (example, template) pair to score: the first `limit` examples of the task's evaluation split."""
    tset, templates = usable_templates(task, trained, templates_dir)
    if task in CLASSIFICATION:
        from workbench.data import get_task

        spec = get_task(task)
        options = tset.answers or spec.label_names
        rows = [(e.guid, {f: e.fields[f] for f in spec.text_fields}, e.label)
                for e in spec.load_split(spec.eval_split)[:limit]]
    else:
        from workbench.cot.tasks import load_cot_task

        options = None
        rows = [(q.qid, {"question": q.question}, q.gold) for q in load_cot_task(task).questions[:limit]]
    items = []
    for tpl in templates:
        for guid, fields, gold in rows:
            prompt, _ = render(tpl, {**fields, "answer": ""}, options, with_options=options is not None)
            items.append(EvalItem(task, f"{task}:{tpl.template_id}", guid, prompt, options, gold))
    return items


def rank_classify(model: InstructionModel, tokenizer, items: list[EvalItem], batch_size: int = 16,
                  progress: bool = False) -> list[int]:
    """The index of the option with the highest total log-likelihood after each item's prompt."""
    import torch
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    option_ids = {}
    sequences: list[EncodedLM] = []
    owner: list[tuple[int, int]] = []  # (item, option) of each sequence
    for i, item in enumerate(items):
        ids = prompt_ids(tokenizer, item.prompt)
        for k, option in enumerate(item.options or ()):
            if option not in option_ids:
                option_ids[option] = tokenizer(option, add_special_tokens=False)["input_ids"]
            sequences.append(EncodedLM(ids + option_ids[option], [IGNORE] * len(ids) + option_ids[option]))
            owner.append((i, k))
    scores = torch.full((len(items), max((len(it.options or ()) for it in items), default=0)), -float("inf"))
    pad = tokenizer.pad_token_id
    batches = list(length_batches(sequences, batch_size))
    was_training = model.training
    model.eval()
    for idx in tqdm(batches, desc="rank classification", disable=not progress, leave=False, file=sys.stderr):
        batch = {k: v.to(device) for k, v in collate_lm([sequences[j] for j in idx], pad).items()}
        for j, value in zip(idx, model.sequence_logprobs(batch).float().cpu().tolist()):
            scores[owner[j]] = value
    model.train(was_training)
    return scores.argmax(-1).tolist()


def generate_answers(model: InstructionModel, tokenizer, items: list[EvalItem], max_new_tokens: int = 32,
                     batch_size: int = 16, progress: bool = False) -> list[str]:
    """Each item's greedy answer, as text."""
    from tqdm.auto import tqdm

    prompts = [prompt_ids(tokenizer, item.prompt) for item in items]
    out: list[str] = [""] * len(items)
    eos = end_ids(tokenizer)
    batches = list(length_batches(prompts, batch_size, len))
    for idx in tqdm(batches, desc="generation", disable=not progress, leave=False, file=sys.stderr):
        for j, tokens in zip(idx, model.generate([prompts[j] for j in idx], max_new_tokens, eos,
                                                 tokenizer.pad_token_id)):
            out[j] = tokenizer.decode(tokens, skip_special_tokens=True)
    return out


def score_task(model: InstructionModel, tokenizer, items: list[EvalItem], batch_size: int = 16,
               max_new_tokens: int = 32, progress: bool = False) -> TaskScore:
    """Accuracy of one task's items (mean over templates), with every prediction."""
    from workbench.cot.answers import extract

    if not items:
        raise ConfigError("nothing to evaluate: the task has no examples in its evaluation split")
    if items[0].options is not None:
        picked = rank_classify(model, tokenizer, items, batch_size, progress)
        answers = [it.options[k] for it, k in zip(items, picked)]
        right = [k == it.gold for it, k in zip(items, picked)]
    else:
        answers = generate_answers(model, tokenizer, items, max_new_tokens, batch_size, progress)
        right = [extract(a, "number", few_shot=False) == it.gold for it, a in zip(items, answers)]
    per: dict[str, list[bool]] = {}
    for it, ok in zip(items, right):
        per.setdefault(it.template_id, []).append(ok)
    per_template = {t: sum(v) / len(v) for t, v in per.items()}
    predictions = [{"template_id": it.template_id, "guid": it.guid, "answer": a,
                    "gold": it.options[it.gold] if it.options else it.gold, "correct": ok}
                   for it, a, ok in zip(items, answers, right)]
    return TaskScore(items[0].task, sum(per_template.values()) / len(per_template), per_template,
                     len(next(iter(per.values()))), predictions)
