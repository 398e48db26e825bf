"""Prompts for the Self-Instruct steps and for Alpaca's single pass. The demonstrations are our own words;
the structure (headers, field markers, dangling list index, stop sequences) follows the reference code."""

from __future__ import annotations

import re

from workbench.instruct.seeds import SeedTask

INSTRUCTION_HEADER = "Come up with a series of tasks:\n"
INSTRUCTION_STOP = ("\n\n", "\n16", "16.", "16 .")
CLF_QUESTION = "Can the following task be regarded as a classification task with finite output labels?\n\n"
# The reference stops at "Example 6" and "Task:"; our demonstrations never contain a blank line inside a task,
# so a blank line also ends the instances (a small model otherwise rambles to max_tokens).
INSTANCE_STOP = ("Example 6", "Task:", "\n\n")

# Our own demonstrations for "is it classification?" (the reference prompt has 31; we keep it short so a small
# local model sees the pattern without a long prompt).
_CLF_DEMOS = [
    ("Given a product review, say whether the customer would recommend the product.", "Yes"),
    ("Write a short poem about the first snow of winter.", "No"),
    ("Decide whether the email is a phishing attempt or a legitimate message.", "Yes"),
    ("Suggest three ways to reduce food waste at home.", "No"),
    ("Label each sentence as a question, a command or a statement.", "Yes"),
    ("Explain how a refrigerator keeps food cold.", "No"),
    ("Translate the paragraph into German.", "No"),
    ("Tell whether the two sentences mean the same thing.", "Yes"),
    ("Summarize the article in three bullet points.", "No"),
    ("Identify the part of speech of the underlined word.", "Yes"),
    ("Give a recipe for a vegetarian lasagna.", "No"),
    ("Is the statement about history true or false?", "Yes"),
]

_CLF_INSTANCE_DEMOS = """Given the classification task definition and the class labels, generate an input that corresponds to each of the class labels. If the task doesn't require input, just generate the correct class label.

Task: Decide whether the restaurant review is positive or negative.
Class label: positive
Review: The pasta was fresh, the staff remembered our names, and the dessert was worth the trip.
Class label: negative
Review: We waited forty minutes for cold soup and nobody apologised.

Task: Which season does the described activity usually happen in?
Class label: winter
Activity: Building a snowman in the garden.
Class label: summer
Activity: Swimming in the lake after a long hot day.

Task: Is the number a multiple of three? Answer yes or no.
Class label: yes
Number: 27
Class label: no
Number: 40

Task: Classify the sentence as formal or informal.
Class label: formal
Sentence: We would be grateful if you could confirm your attendance by Monday.
Class label: informal
Sentence: Can't wait to see you guys on Monday!

"""

_GEN_INSTANCE_DEMOS = """Come up with examples for the following tasks. Try to generate multiple examples when possible. If the task doesn't require additional input, you can generate the output directly.

Task: Suggest a name for the pet described.
Example 1
Pet: A fluffy white rabbit that loves carrots.
Output: Snowball
Example 2
Pet: A very loud orange parrot.
Output: Mango

Task: Give two tips for sleeping better.
Output: 1. Keep a regular bedtime, even at weekends. 2. Avoid screens for an hour before going to sleep.

Task: Convert the time from the 24-hour clock to the 12-hour clock.
Example 1
Time: 17:45
Output: 5:45 pm
Example 2
Time: 08:10
Output: 8:10 am

Task: Rewrite the sentence so that it is polite.
Example 1
Sentence: Give me the report now.
Output: Could you please send me the report when you have a moment?

"""

_ALPACA_PROMPT = """You are asked to come up with a set of diverse task instructions. These task instructions will be given to a language model, and we will evaluate the model for completing the instructions.

Here are the requirements:
1. Use a different verb in each instruction to keep them diverse.
2. Mix the phrasing: some instructions are questions, some are imperatives.
3. Mix the kinds of task: open-ended writing, classification, editing, brainstorming, reasoning, and so on.
4. The task must be doable by a text-only model: no images, audio or actions in the real world.
5. Write the instructions in English, one or two sentences each.
6. Give a realistic input when the task needs one (no placeholders, under 100 words); otherwise write "<noinput>".
7. The output must be a good answer to the instruction and input, under 100 words.

List of tasks:
"""


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().rstrip(":")


def instruction_prompt(instructions: list[str]) -> str:
    body = "".join(f"{i}. {_one_line(text)}\n" for i, text in enumerate(instructions, start=1))
    return INSTRUCTION_HEADER + body + f"{len(instructions) + 1}."


def classification_prompt(instruction: str) -> str:
    demos = "".join(f"Task: {t}\nIs it classification? {a}\n\n" for t, a in _CLF_DEMOS)
    return CLF_QUESTION + demos + f"Task: {_one_line(instruction)}\nIs it classification?"


def is_yes(answer: str) -> bool:
    return answer.strip() in ("Yes", "yes", "YES")


def instance_prompt(instruction: str, is_classification: bool) -> str:
    demos = _CLF_INSTANCE_DEMOS if is_classification else _GEN_INSTANCE_DEMOS
    return demos + f"Task: {instruction.strip()}\n"


def alpaca_prompt(seeds: list[SeedTask]) -> str:
    text = _ALPACA_PROMPT
    for k, task in enumerate(seeds, start=1):
        inst = task.instances[0]
        text += "###\n"
        text += f"{k}. Instruction: {_one_line(task.instruction)}\n"
        text += f"{k}. Input:\n{inst.input if inst.input.strip() else '<noinput>'}\n"
        text += f"{k}. Output:\n{inst.output}\n"
    return text + f"###\n{len(seeds) + 1}. Instruction:"
