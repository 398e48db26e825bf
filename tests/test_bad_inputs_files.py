"""Bad files, one row each: every file the command line reads (templates, verbalizers, task YAML, task data,
predict input, --config, --space, `prompts check`) is refused in one line naming the file and line (or the
field), with exit code 2, no traceback, and before any model weights load (tests/bad_inputs.py).

After the table: a byte-order mark changes nothing, YAML aliases are refused fast and small, a template's
`{"soft": "word"}` reads as the word for methods without soft tokens, and `predict` checks its input's columns
against the run's task before the model loads.
"""

from __future__ import annotations

import time
import tracemalloc

import pytest
from bad_inputs import Case, run_case

BAD = b"\xff\xfe bad"  # not UTF-8
BOM = "\ufeff"

TASK = "name: tiny\nfiles: {train: train.tsv, test: test.tsv}\ntext_fields: [text]\nlabel_names: [neg, pos]\n"
TRAIN = "text\tlabel\n" + "".join(f"row {i}\t{'neg' if i % 2 else 'pos'}\n" for i in range(12))
TEST = "text\tlabel\nfine\tpos\nawful\tneg\n"
TEMPLATE = '{"placeholder": "text_a"} It was {"mask"}.\n'
VERBALIZER = "bad\ngood\n"


def task(**files: str | bytes) -> dict[str, str | bytes]:
    """The tiny task's files, with some replaced (a value of None drops a file)."""
    out = {"task.yaml": TASK, "train.tsv": TRAIN, "test.tsv": TEST, "tpl.txt": TEMPLATE, "v.txt": VERBALIZER}
    out.update(files)
    return {k: v for k, v in out.items() if v is not None}


def task_yaml(body: str, **files: str | bytes) -> dict[str, str | bytes]:
    return task(**{"task.yaml": body}, **files)


def json_task(suffix: str, train: str | bytes) -> dict[str, str | bytes]:
    body = TASK.replace("train.tsv", f"train{suffix}")
    return task(**{"task.yaml": body, "train.tsv": None, f"train{suffix}": train})


TRAIN_ARGV = ["train", "--task", "task.yaml", "--shots", "2", "--template-file", "tpl.txt",
              "--verbalizer-file", "v.txt", "--method", "prompt-finetune"]
SWEEP_ARGV = ["sweep", "--method", "lora", "--task", "sst2", "--no-final"]
PREDICT_ARGV = ["predict", "--run", "0123456789abcdef", "--input", "in.tsv"]


def laughs() -> str:
    """The "billion laughs": about 500 bytes that expand to 10**9 strings if aliases are followed."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    prev = "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 10) + "]")
        prev = name
    return "\n".join(lines) + "\n"


LAUGHS = laughs()
ALIAS = ["line 2", "YAML aliases (*a) are not supported"]
COT_TASK = "name: coin\ndata: coins.jsonl\nquestion_field: q\nanswer_field: a\nanswer_type: yes-no\n"
COT_DATA = '{"q": "A coin is heads up. Is it still heads up?", "a": "yes"}\n'

CASES = [
    # --- not UTF-8 -------------------------------------------------------------------------------------
    Case("template-file-not-utf8", TRAIN_ARGV + ["--template-file", "tpl.txt"], ["tpl.txt", "line 1", "not UTF-8"],
         task(**{"tpl.txt": BAD})),
    Case("prompt-template-override-not-utf8", TRAIN_ARGV + ["prompt.template=tpl.txt"],
         ["tpl.txt", "line 1", "not UTF-8"], task(**{"tpl.txt": BAD})),
    Case("verbalizer-file-not-utf8", TRAIN_ARGV + ["--verbalizer-file", "v.txt"], ["v.txt", "not UTF-8"],
         task(**{"v.txt": BAD})),
    Case("task-yaml-not-utf8", ["train", "--task", "bad.yaml"], ["bad.yaml", "line 1", "not UTF-8"],
         {"bad.yaml": BAD}),
    Case("tasks-show-not-utf8", ["tasks", "show", "bad.yaml"], ["bad.yaml", "not UTF-8"], {"bad.yaml": BAD}),
    Case("train-data-not-utf8-names-line", TRAIN_ARGV, ["train.tsv", "line 3", "not UTF-8"],
         task(**{"train.tsv": b"text\tlabel\nok\tneg\n\xff bad\tpos\n"})),
    Case("test-data-not-utf8", TRAIN_ARGV, ["test.tsv", "not UTF-8"], task(**{"test.tsv": BAD})),
    Case("jsonl-data-not-utf8", TRAIN_ARGV, ["train.jsonl", "not UTF-8"], json_task(".jsonl", BAD)),
    Case("predict-input-not-utf8", PREDICT_ARGV, ["in.tsv", "not UTF-8"], {"in.tsv": BAD}),
    Case("config-not-utf8", ["train", "--config", "cfg.yaml"], ["cfg.yaml", "not UTF-8"], {"cfg.yaml": BAD}),
    Case("sweep-space-not-utf8", SWEEP_ARGV + ["--space", "space.yaml"], ["space.yaml", "not UTF-8"],
         {"space.yaml": BAD}),
    Case("prompts-check-not-utf8", ["prompts", "check", "bad.txt"], ["bad.txt", "not UTF-8"], {"bad.txt": BAD}),

    # --- a directory where a file is expected ---------------------------------------------------------
    Case("template-file-is-dir", TRAIN_ARGV + ["--template-file", "tdir"], ["tdir", "is a directory"],
         task(**{"tdir/keep": ""})),
    Case("verbalizer-file-is-dir", TRAIN_ARGV + ["--verbalizer-file", "vdir"], ["vdir", "is a directory"],
         task(**{"vdir/keep": ""})),
    Case("task-yaml-is-dir", ["train", "--task", "tdir.yaml"], ["tdir.yaml", "is a directory"],
         {"tdir.yaml/keep": ""}),
    Case("tasks-show-dir", ["tasks", "show", "tdir.yaml"], ["tdir.yaml", "is a directory"], {"tdir.yaml/keep": ""}),
    Case("task-data-is-dir", TRAIN_ARGV, ["task.yaml", "line 2", "files.train", "is a directory"],
         task(**{"train.tsv": None, "train.tsv/keep": ""})),
    Case("predict-input-is-dir", PREDICT_ARGV[:-1] + ["indir"], ["indir", "is a directory"], {"indir/keep": ""}),
    Case("config-is-dir", ["train", "--config", "cdir"], ["cdir", "is a directory"], {"cdir/keep": ""}),
    Case("sweep-space-is-dir", SWEEP_ARGV + ["--space", "sdir"], ["sdir", "is a directory"], {"sdir/keep": ""}),
    Case("prompts-check-dir", ["prompts", "check", "pdir"], ["pdir", "is a directory"], {"pdir/keep": ""}),

    # --- a pipe, a device or a huge file where a file is expected: refused before it is opened -------------
    # Opening a named pipe blocks until a writer comes (forever); /dev/zero never ends; each was once a hang or a
    # MemoryError. The harness fails a case that runs past its time limit, so a regression cannot hang the suite.
    Case("config-fifo", ["train", "--config", "cfg.yaml"], ["cfg.yaml", "is a named pipe (FIFO)"],
         fifos=["cfg.yaml"]),
    Case("config-dev-zero", ["train", "--config", "/dev/zero"], ["/dev/zero", "is a device, not a regular file"]),
    Case("config-too-large", ["train", "--config", "cfg.yaml"], ["cfg.yaml", "larger than a config file may be"],
         sparse={"cfg.yaml": 17 << 20}),
    Case("sweep-config-fifo", SWEEP_ARGV + ["--config", "cfg.yaml"], ["cfg.yaml", "named pipe"], fifos=["cfg.yaml"]),
    Case("sweep-space-fifo", SWEEP_ARGV + ["--space", "space.yaml"], ["space.yaml", "named pipe"],
         fifos=["space.yaml"]),
    Case("sweep-space-dev-zero", SWEEP_ARGV + ["--space", "/dev/zero"], ["/dev/zero", "is a device"]),
    Case("task-yaml-fifo", ["train", "--task", "task.yaml"], ["task.yaml", "named pipe"], fifos=["task.yaml"]),
    Case("tasks-show-fifo", ["tasks", "show", "task.yaml"], ["task.yaml", "named pipe"], fifos=["task.yaml"]),
    Case("task-data-fifo", TRAIN_ARGV, ["task.yaml", "line 2", "files.train", "train.tsv", "named pipe"],
         task(**{"train.tsv": None}), fifos=["train.tsv"]),
    Case("task-test-data-fifo", TRAIN_ARGV, ["task.yaml", "line 2", "files.test", "named pipe"],
         task(**{"test.tsv": None}), fifos=["test.tsv"]),
    Case("task-data-too-large", TRAIN_ARGV, ["task.yaml", "line 2", "files.test", "larger than a data file may be"],
         task(**{"test.tsv": None}), sparse={"test.tsv": (2 << 30) + 1}),
    Case("task-yaml-templates-fifo", ["tasks", "show", "task.yaml"],
         ["task.yaml", "line 5", "templates:", "named pipe"], task_yaml(TASK + "templates: t.txt\n"), fifos=["t.txt"]),
    Case("template-file-fifo", TRAIN_ARGV, ["tpl.txt", "named pipe"], task(**{"tpl.txt": None}), fifos=["tpl.txt"]),
    Case("prompt-template-override-fifo", TRAIN_ARGV + ["prompt.template=t.txt"], ["t.txt", "named pipe"], task(),
         fifos=["t.txt"]),
    Case("verbalizer-file-fifo", TRAIN_ARGV, ["v.txt", "named pipe"], task(**{"v.txt": None}), fifos=["v.txt"]),
    Case("template-file-dev-zero", TRAIN_ARGV + ["--template-file", "/dev/zero"], ["/dev/zero", "is a device"],
         task()),
    Case("predict-input-fifo", PREDICT_ARGV, ["in.tsv", "named pipe"], fifos=["in.tsv"]),
    Case("predict-input-dev-zero", PREDICT_ARGV[:-1] + ["/dev/zero"], ["/dev/zero", "is a device"]),
    Case("prompts-check-fifo", ["prompts", "check", "p.txt"], ["p.txt", "named pipe"], fifos=["p.txt"]),

    # --- JSON and JSON Lines data ---------------------------------------------------------------------
    Case("jsonl-invalid-line", TRAIN_ARGV, ["train.jsonl", "line 3", "not valid JSON"],
         json_task(".jsonl", '{"text": "a", "label": "neg"}\n{"text": "b", "label": "pos"}\n{"text": "c",\n')),
    Case("json-invalid", TRAIN_ARGV, ["train.json", "line 2", "not valid JSON"],
         json_task(".json", '[{"text": "a", "label": "neg"},\n {"text": }]\n')),
    Case("json-not-an-array", TRAIN_ARGV, ["train.json", "expected a JSON array"],
         json_task(".json", '{"text": "a", "label": "neg"}\n')),
    Case("jsonl-record-not-object", TRAIN_ARGV, ["train.jsonl", "line 2", "expected a JSON object"],
         json_task(".jsonl", '{"text": "a", "label": "neg"}\n["b", "pos"]\n')),
    Case("jsonl-text-null", TRAIN_ARGV, ["train.jsonl", "line 2", "'text' is null"],
         json_task(".jsonl", '{"text": "a", "label": "neg"}\n{"text": null, "label": "pos"}\n')),
    Case("jsonl-missing-text", TRAIN_ARGV, ["train.jsonl", "line 2", "missing field 'text'"],
         json_task(".jsonl", '{"text": "a", "label": "neg"}\n{"label": "pos"}\n')),
    Case("json-label-not-a-class", TRAIN_ARGV, ["train.json", "record 2", "label 'meh'"],
         json_task(".json", '[{"text": "a", "label": "neg"}, {"text": "b", "label": "meh"}]')),

    # --- task YAML fields ----------------------------------------------------------------------------
    Case("files-train-null", TRAIN_ARGV, ["task.yaml", "line 3", "files.train", "null is not allowed"],
         task_yaml("name: tiny\nfiles:\n  train: null\ntext_fields: [text]\nlabel_names: [neg, pos]\n")),
    Case("files-train-number", TRAIN_ARGV, ["task.yaml", "line 2", "files.train", "5 is not allowed"],
         task_yaml("name: tiny\nfiles: {train: 5}\ntext_fields: [text]\nlabel_names: [neg, pos]\n")),
    Case("files-a-list", ["tasks", "show", "task.yaml"], ["task.yaml", "line 2", "files:"],
         task_yaml("name: tiny\nfiles: [train.tsv]\ntext_fields: [text]\nlabel_names: [neg, pos]\n")),
    Case("files-unsupported-type", TRAIN_ARGV, ["task.yaml", "files.train", "unsupported file type"],
         task_yaml(TASK.replace("train.tsv", "train.txt"), **{"train.txt": TRAIN})),
    Case("duplicate-label-names", TRAIN_ARGV, ["task.yaml", "line 4", "label_names", "'pos' appears twice"],
         task_yaml("name: tiny\nfiles: {train: train.tsv}\ntext_fields: [text]\nlabel_names: [neg, pos, pos]\n")),
    Case("duplicate-label-values", ["tasks", "show", "task.yaml"], ["task.yaml", "label_values", "'1' appears twice"],
         task_yaml(TASK + "label_values: ['1', '1']\n")),
    Case("label-names-yes-no", ["tasks", "show", "task.yaml"], ["task.yaml", "line 4", "yes reads as a boolean",
                                                                "'yes'"],
         task_yaml(TASK.replace("[neg, pos]", "[yes, no]"))),
    Case("label-values-count", ["tasks", "show", "task.yaml"], ["task.yaml", "label_values has 3 entries"],
         task_yaml(TASK + "label_values: [a, b, c]\n")),
    Case("task-yaml-a-list", ["tasks", "show", "task.yaml"], ["task.yaml", "expected a mapping of task fields"],
         task_yaml("- name\n- files\n")),
    Case("task-yaml-empty", ["tasks", "show", "task.yaml"], ["task.yaml", "empty"], task_yaml("")),
    Case("task-yaml-syntax", ["tasks", "show", "task.yaml"], ["task.yaml", "line 3", "not valid YAML"],
         task_yaml("name: tiny\nfiles: {train: train.tsv\ntext_fields: [text]\n")),
    Case("task-yaml-duplicate-key", ["tasks", "show", "task.yaml"], ["task.yaml", "line 5", "'name' appears twice"],
         task_yaml(TASK + "name: other\n")),
    Case("task-yaml-eval-split-list", ["tasks", "show", "task.yaml"], ["task.yaml", "eval_split"],
         task_yaml(TASK + "eval_split: [test]\n")),
    Case("task-yaml-billion-laughs", ["tasks", "show", "task.yaml"], ["task.yaml", *ALIAS], task_yaml(LAUGHS)),
    Case("task-yaml-billion-laughs-train", ["train", "--task", "task.yaml"], ["task.yaml", *ALIAS], task_yaml(LAUGHS)),
    Case("task-yaml-templates-missing", ["train", "--task", "task.yaml"],
         ["task.yaml", "line 5", "templates:", "nope.txt does not exist"], task_yaml(TASK + "templates: nope.txt\n")),
    Case("task-yaml-verbalizer-missing", ["tasks", "show", "task.yaml"],
         ["task.yaml", "line 6", "verbalizer:", "gone/v.txt does not exist"],
         task_yaml(TASK + "templates: tpl.txt\nverbalizer: gone/v.txt\n")),
    Case("task-yaml-templates-a-list", ["tasks", "show", "task.yaml"],
         ["task.yaml", "line 5", "templates: ['tpl.txt'] is not allowed", "expected a file name"],
         task_yaml(TASK + "templates: [tpl.txt]\n")),
    Case("task-yaml-verbalizer-is-dir", ["tasks", "show", "task.yaml"], ["task.yaml", "verbalizer:", "is a directory"],
         task_yaml(TASK + "verbalizer: vdir\n", **{"vdir/keep": ""})),

    # --- task data rows ------------------------------------------------------------------------------
    Case("test-file-header-only", TRAIN_ARGV, ["test.tsv", "no records after the header"],
         task(**{"test.tsv": "text\tlabel\n"})),
    Case("train-file-empty", TRAIN_ARGV, ["train.tsv", "line 1", "no header"], task(**{"train.tsv": ""})),
    Case("missing-text-column", TRAIN_ARGV, ["train.tsv", "line 1", "no column 'text'"],
         task(**{"train.tsv": TRAIN.replace("text\tlabel", "sentence\tlabel")})),
    Case("label-not-a-class", TRAIN_ARGV, ["train.tsv", "line 3", "label 'maybe' is not one of"],
         task(**{"train.tsv": "text\tlabel\nok\tneg\nhm\tmaybe\n"})),
    Case("column-count", TRAIN_ARGV, ["train.tsv", "line 3", "3 columns, but the header has 2"],
         task(**{"train.tsv": "text\tlabel\nok\tneg\nhm\tpos\textra\n"})),
    Case("duplicate-header-column", TRAIN_ARGV, ["train.tsv", "line 1", "'text' appears twice"],
         task(**{"train.tsv": "text\ttext\tlabel\na\tb\tneg\n"})),
    Case("csv-missing-label-column", TRAIN_ARGV, ["train.csv", "line 1", "no column 'label'"],
         task_yaml(TASK.replace("train.tsv", "train.csv"), **{"train.csv": "text,stars\na,neg\n"})),
    Case("tasks-show-bad-row", ["tasks", "show", "task.yaml"], ["test.tsv", "line 2", "label 'so-so'"],
         task(**{"test.tsv": "text\tlabel\nhm\tso-so\n"})),

    # --- predict input -------------------------------------------------------------------------------
    Case("predict-header-only", PREDICT_ARGV, ["in.tsv", "no records after the header"], {"in.tsv": "text\n"}),
    Case("predict-empty", PREDICT_ARGV, ["in.tsv", "line 1", "no header"], {"in.tsv": ""}),
    Case("predict-missing-file", PREDICT_ARGV, ["in.tsv", "not found"]),
    Case("predict-column-count", PREDICT_ARGV, ["in.tsv", "line 3", "2 columns"], {"in.tsv": "text\na\nb\tc\n"}),
    Case("predict-out-is-dir", PREDICT_ARGV + ["--out", "odir"], ["--out odir", "is a directory"],
         {"in.tsv": "text\na\n", "odir/keep": ""}),

    # --- verbalizers ---------------------------------------------------------------------------------
    Case("verbalizer-word-in-two-classes", TRAIN_ARGV + ["--verbalizer-file", "v.txt"],
         ["v.txt:2", "label word 'good' is also a word of class 1 (line 1)"],
         task(**{"v.txt": "good, fine\nbad, good\n"})),
    Case("verbalizer-word-twice-in-class", TRAIN_ARGV + ["--verbalizer-file", "v.txt"],
         ["v.txt:1", "'bad' appears twice"], task(**{"v.txt": "bad, awful, bad\ngood\n"})),
    Case("verbalizer-json-word-in-two-classes", TRAIN_ARGV + ["--verbalizer-file", "v.json"],
         ["v.json:3", "'ok' is also a word of class 'neg' (line 2)"],
         task(**{"v.json": '{\n "neg": ["bad", "ok"],\n "pos": ["ok"]\n}\n'})),
    Case("prompts-check-word-in-two-classes", ["prompts", "check", "v.txt"], ["v.txt:2", "'good'"],
         {"v.txt": "good\ngood\n"}),

    # --- templates -----------------------------------------------------------------------------------
    Case("soft-slot-user-template", TRAIN_ARGV + ["--template-file", "soft.txt"],
         ["soft.txt:1", "prompt.template (--template-file)", "template 0 has a bare", "p-tuning"],
         task(**{"soft.txt": '{"placeholder": "text_a"} It {"soft"} {"mask"}.\n'})),
    Case("soft-slot-builtin-template", ["train", "--task", "sst2", "--method", "lora", "--template-id", "4"],
         ["sst2.txt:5", "template 4 has a bare", "method 'lora'"]),
    Case("soft-slot-duplicate-icl", TRAIN_ARGV[:-1] + ["icl", "--template-file", "soft.txt", "--template-id", "1"],
         ["soft.txt:2", "template 1 has a bare", "method 'icl'"],
         task(**{"soft.txt": TEMPLATE + '{"soft": null, "duplicate": 2} {"placeholder": "text_a"} {"mask"}\n'}),),
    Case("soft-slot-prompt-tuning", TRAIN_ARGV[:-1] + ["prompt-tuning", "--template-file", "soft.txt"],
         ["soft.txt:1", "method 'prompt-tuning'"],
         task(**{"soft.txt": '{"placeholder": "text_a"} {"soft"}{"soft": "was"} {"mask"}\n'})),
    Case("template-file-only-comments", TRAIN_ARGV + ["--template-file", "tpl.txt"], ["tpl.txt", "no templates"],
         task(**{"tpl.txt": "# nothing here\n\n"})),
    Case("user-task-no-template", ["train", "--task", "task.yaml", "--shots", "2", "--verbalizer-file", "v.txt"],
         ["task 'tiny' has no template", "--template-file FILE (prompt.template)", "templates: field",
          "the task YAML (task.yaml)"], task()),
    Case("user-task-no-verbalizer", ["train", "--task", "task.yaml", "--shots", "2", "--template-file", "tpl.txt"],
         ["task 'tiny' has no verbalizer", "--verbalizer-file FILE (prompt.verbalizer)", "verbalizer: field"], task()),
    Case("task-yaml-template-without-mask", ["train", "--task", "{tmp}/task.yaml", "--shots", "2"],
         ["tpl.txt", "no {{\"mask\"}}"],
         task_yaml(TASK + "templates: tpl.txt\nverbalizer: v.txt\n", **{"tpl.txt": '{"placeholder": "text_a"} ok\n'})),
    Case("prompts-check-task-files", ["prompts", "check", "--task", "task.yaml"], ["tpl.txt:1", "placeholder 'text_b'"],
         task_yaml(TASK + "templates: tpl.txt\n", **{"tpl.txt": '{"placeholder": "text_b"} {"mask"}\n'})),
    Case("prompts-check-task-without-files", ["prompts", "check", "--task", "task.yaml"],
         ["task 'tiny' has no template or verbalizer file to check", "task.yaml", "templates:"], task()),

    Case("template-only-a-mask", TRAIN_ARGV, ["tpl.txt:1", "prompt.template (--template-file)", "no input field"],
         task(**{"tpl.txt": '{"mask"}\n'})),
    Case("template-mask-and-text-only", TRAIN_ARGV + ["--template-id", "1"], ["tpl.txt:2", "no input field"],
         task(**{"tpl.txt": "# the label only\n" + 'It was {"mask"}.\n'})),
    Case("prompts-check-only-a-mask", ["prompts", "check", "tpl.txt"], ["tpl.txt:1", "no input field"],
         {"tpl.txt": '{"mask"}\n'}),
    Case("soft-duplicate-huge", TRAIN_ARGV[:-1] + ["p-tuning", "--template-file", "soft.txt"],
         ["soft.txt:1", "'duplicate' asks for 100000000 soft tokens", "at most 1024"],
         task(**{"soft.txt": '{"placeholder": "text_a"} {"soft": null, "duplicate": 100000000} {"mask"}\n'})),
    Case("soft-words-too-many", TRAIN_ARGV[:-1] + ["p-tuning", "--template-file", "soft.txt"],
         ["soft.txt:1", "asks for 2000 soft tokens"],
         task(**{"soft.txt": '{"placeholder": "text_a"} {"soft": "' + "so " * 2000 + '"} {"mask"}\n'})),

    # --- a sweep or comparison checks its run once, before the first trial (which would load a model) ---------
    Case("sweep-task-without-template", ["sweep", "--method", "lora", "--task", "task.yaml", "--shots", "2",
                                         "--no-final", "--storage", "sqlite:///{tmp}/optuna.db"],
         ["task 'tiny' has no template", "--template-file FILE (prompt.template)"], task()),
    Case("sweep-template-only-a-mask", ["sweep", "--method", "lora", "--task", "task.yaml", "--shots", "2",
                                        "--no-final", "--storage", "sqlite:///{tmp}/optuna.db"],
         ["tpl.txt:1", "no input field"],
         task_yaml(TASK + "templates: tpl.txt\nverbalizer: v.txt\n", **{"tpl.txt": '{"mask"}\n'})),
    Case("compare-task-without-template", ["compare", "--task", "task.yaml", "--shots", "2", "--methods",
                                           "finetune,lora", "--seeds", "13"], "task 'tiny' has no template", task()),

    # --- the evaluation split must share no row with the training split --------------------------------------
    Case("eval-split-train", TRAIN_ARGV + ["--eval-split", "train"],
         ["eval.split (--eval-split): 'train' is the split", "would include training rows"], task()),
    Case("task-yaml-eval-split-train", ["train", "--task", "task.yaml", "--shots", "2"],
         ["task 'tiny' (task.yaml): its evaluation split 'train'", "would include training rows"],
         task_yaml(TASK + "eval_split: train\ntemplates: tpl.txt\nverbalizer: v.txt\n")),
    Case("task-yaml-only-a-train-file", ["train", "--task", "task.yaml", "--shots", "2"],
         ["its evaluation split 'train'", "would include training rows"],
         task_yaml(TASK.replace(", test: test.tsv", "") + "templates: tpl.txt\nverbalizer: v.txt\n")),
    Case("test-file-is-the-train-file", TRAIN_ARGV, ["its evaluation split 'test' reads train.tsv, the train split's "
                                                     "own file", "would include training rows"],
         task_yaml(TASK.replace("test: test.tsv", "test: train.tsv"))),
    Case("test-file-a-copy-of-train", TRAIN_ARGV, ["'test' reads test.tsv, a copy of the train split's train.tsv"],
         task(**{"test.tsv": TRAIN})),
    Case("sweep-eval-split-train", ["sweep", "--method", "lora", "--task", "task.yaml", "--shots", "2", "--no-final",
                                    "--eval-split", "train", "--storage", "sqlite:///{tmp}/optuna.db"],
         ["eval.split (--eval-split): 'train'", "would include training rows"],
         task_yaml(TASK + "templates: tpl.txt\nverbalizer: v.txt\n")),

    # --- one class is not a classification task ---------------------------------------------------------------
    Case("task-one-label-name", ["tasks", "show", "task.yaml"], ["task.yaml", "line 4", "label_names: ['pos'] names "
                                                                "one class", "at least two"],
         task_yaml(TASK.replace("[neg, pos]", "[pos]"))),
    Case("train-one-label-name", TRAIN_ARGV, ["task.yaml", "line 4", "names one class"],
         task_yaml(TASK.replace("[neg, pos]", "[pos]"))),
    Case("train-data-one-class", TRAIN_ARGV, ["task 'tiny'", "the training split has only", "'neg': 0"],
         task(**{"train.tsv": "text\tlabel\n" + "fine\tpos\n" * 8})),

    # --- --config ------------------------------------------------------------------------------------
    Case("config-a-list", ["train", "--config", "cfg.yaml"], ["cfg.yaml", "got a YAML list"],
         {"cfg.yaml": "- task: sst2\n"}),
    Case("config-a-scalar", ["train", "--config", "cfg.yaml"], ["cfg.yaml", "got a YAML string"],
         {"cfg.yaml": "sst2\n"}),
    Case("config-empty", ["train", "--config", "cfg.yaml"], ["cfg.yaml", "empty"], {"cfg.yaml": "# nothing\n"}),
    Case("config-max-steps-abc", ["train", "--config", "cfg.yaml"], ["cfg.yaml", "train.max_steps", "'abc'"],
         {"cfg.yaml": "train: {max_steps: abc}\n"}),
    Case("config-unknown-field", ["train", "--config", "cfg.yaml"], ["cfg.yaml", "unknown field(s) ['colour']"],
         {"cfg.yaml": "colour: red\n"}),
    Case("config-unknown-train-field", ["train", "--config", "cfg.yaml"], ["cfg.yaml", "train", "'lrr'", "lr"],
         {"cfg.yaml": "train: {lrr: 0.1}\n"}),
    Case("config-billion-laughs", ["train", "--config", "cfg.yaml"], ["cfg.yaml", *ALIAS], {"cfg.yaml": LAUGHS}),
    Case("sweep-config-billion-laughs", SWEEP_ARGV + ["--config", "cfg.yaml"], ["cfg.yaml", *ALIAS],
         {"cfg.yaml": LAUGHS}),
    Case("config-syntax", ["train", "--config", "cfg.yaml"], ["cfg.yaml", "line 2", "not valid YAML"],
         {"cfg.yaml": "task: sst2\ntrain: {lr: 1\n"}),
    Case("config-duplicate-key", ["train", "--config", "cfg.yaml"], ["cfg.yaml", "line 2", "'task' appears twice"],
         {"cfg.yaml": "task: sst2\ntask: rte\n"}),
    Case("config-python-tag", ["train", "--config", "cfg.yaml"], ["cfg.yaml", "line 1", "not valid YAML"],
         {"cfg.yaml": "task: !!python/object/apply:os.system ['true']\n"}),
    Case("config-missing", ["train", "--config", "nope.yaml"], ["nope.yaml", "config file not found"]),

    # --- sweep --space -------------------------------------------------------------------------------
    Case("space-billion-laughs", SWEEP_ARGV + ["--space", "space.yaml"], ["space.yaml", *ALIAS],
         {"space.yaml": LAUGHS}),
    Case("space-a-list", SWEEP_ARGV + ["--space", "space.yaml"], ["space.yaml", "got a YAML list"],
         {"space.yaml": "- train.lr\n"}),
    Case("space-empty", SWEEP_ARGV + ["--space", "space.yaml"], ["space.yaml", "empty"], {"space.yaml": ""}),
    Case("space-params-a-list", SWEEP_ARGV + ["--space", "space.yaml"], ["space.yaml", "line 1", "params"],
         {"space.yaml": "params: [train.lr]\n"}),
    Case("space-step-not-a-number", SWEEP_ARGV + ["--space", "space.yaml"], ["space.yaml", "line 2", "step"],
         {"space.yaml": "params:\n  method.r: {low: 2, high: 8, step: abc}\n"}),
    Case("space-syntax", SWEEP_ARGV + ["--space", "space.yaml"], ["space.yaml", "line 2", "not valid YAML"],
         {"space.yaml": "params:\n  train.lr: {low: 1\n"}),

    # --- a CoT task YAML (`cot demos|eval --task FILE.yaml`) goes through the same safe loader -------------
    Case("cot-task-billion-laughs", ["cot", "demos", "--task", "coin.yaml"], ["coin.yaml", *ALIAS],
         {"coin.yaml": LAUGHS}),
    Case("cot-task-duplicate-key", ["cot", "eval", "--task", "coin.yaml"],
         ["coin.yaml", "line 2", "'name' appears twice"],
         {"coin.yaml": COT_TASK.replace("name: coin\n", "name: coin\nname: other\n"), "coins.jsonl": COT_DATA}),
    Case("cot-task-python-tag", ["cot", "demos", "--task", "coin.yaml"], ["coin.yaml", "line 1", "not valid YAML"],
         {"coin.yaml": "name: !!python/object/apply:os.system ['true']\n" + COT_TASK.split("\n", 1)[1],
          "coins.jsonl": COT_DATA}),
]


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_bad_file_is_refused(case, tmp_path, monkeypatch, capsys):
    run_case(case, tmp_path, monkeypatch, capsys)


def test_the_table_is_big_and_its_ids_unique():
    assert len(CASES) >= 45
    assert len({c.id for c in CASES}) == len(CASES)


# --- a byte-order mark is dropped, never read as text ------------------------------------------------------

def test_bom_template_file_reads_like_one_without(tmp_path):
    from workbench.prompts import load_templates

    (tmp_path / "plain.txt").write_text(TEMPLATE, encoding="utf-8")
    (tmp_path / "bom.txt").write_text(BOM + TEMPLATE, encoding="utf-8")
    plain, bom = load_templates(tmp_path / "plain.txt"), load_templates(tmp_path / "bom.txt")
    assert [t.segments for t in bom.values()] == [t.segments for t in plain.values()]
    assert bom[0].segments[0].kind == "placeholder" and BOM not in bom[0].text


def test_bom_verbalizer_and_yaml_files_read_like_ones_without(tmp_path):
    from workbench.config.yaml_io import load_yaml_file
    from workbench.prompts import load_verbalizer

    (tmp_path / "v.txt").write_text(BOM + VERBALIZER, encoding="utf-8")
    assert load_verbalizer(tmp_path / "v.txt").words == (("bad",), ("good",))
    (tmp_path / "c.yaml").write_text(BOM + "task: sst2\n", encoding="utf-8")
    assert load_yaml_file(tmp_path / "c.yaml") == {"task": "sst2"}


def test_bom_data_files_read_like_ones_without(tmp_path):
    from workbench.data import load_task_yaml
    from workbench.recipes.predict import read_rows

    for name, text in task().items():
        (tmp_path / name).write_text(BOM + text, encoding="utf-8")
    t = load_task_yaml(tmp_path / "task.yaml")
    rows = t.load_split("train")
    assert len(rows) == 12 and rows[0].fields["text"] == "row 0" and rows[0].label == 1
    (tmp_path / "in.tsv").write_text(BOM + "text\nnice\n", encoding="utf-8")
    assert [r.fields["text"] for r in read_rows(tmp_path / "in.tsv", ("text",))] == ["nice"]


# --- YAML aliases: refused at the first one, fast and small ------------------------------------------------

def test_billion_laughs_is_refused_fast_and_small():
    from workbench.config.yaml_io import parse_yaml
    from workbench.errors import ConfigError

    assert len(LAUGHS) < 600
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"x.yaml: line 2: YAML aliases \(\*a\) are not supported"):
        parse_yaml(LAUGHS, "x.yaml")
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert seconds < 1.0 and peak < 5_000_000


@pytest.mark.parametrize("argv, name", [
    (["tasks", "show", "x.yaml"], "x.yaml"),
    (["train", "--config", "x.yaml"], "x.yaml"),
    (SWEEP_ARGV + ["--space", "x.yaml"], "x.yaml"),
])
def test_billion_laughs_on_the_command_line_takes_under_a_second(argv, name, tmp_path, monkeypatch, capsys):
    start = time.perf_counter()
    run_case(Case("laughs", argv, [name, *ALIAS], {name: LAUGHS}), tmp_path, monkeypatch, capsys)
    assert time.perf_counter() - start < 1.0


def test_merge_keys_and_anchors_without_aliases_still_read():
    from workbench.config.yaml_io import parse_yaml

    assert parse_yaml("a: &x 1\nb: {<<: {c: 2}}\n", "f").data == {"a": 1, "b": {"c": 2}}


# --- soft slots for methods that train no soft tokens ----------------------------------------------------

def test_soft_word_reads_as_the_word():
    from workbench.prompts import parse_template
    from workbench.prompts.template import soft_as_words

    soft = parse_template('{"placeholder": "text_a"} It {"soft": "was"} {"mask"}.')
    plain = parse_template('{"placeholder": "text_a"} It was {"mask"}.')
    assert soft_as_words(soft, "lora").segments == plain.segments
    two = parse_template('{"placeholder": "text_a"} {"soft": "very good"} {"mask"}')
    words = parse_template('{"placeholder": "text_a"} very good {"mask"}')
    assert soft_as_words(two, "lora").segments == words.segments


def test_p_tuning_keeps_soft_slots(tmp_path):
    from workbench.adaptation import get_method
    from workbench.runs import RunConfig
    from workbench.data import load_task_yaml
    from workbench.runs import load_pvp

    for name, text in task(**{"soft.txt": '{"placeholder": "text_a"} It {"soft"} {"mask"}.\n',
                              "v.txt": VERBALIZER}).items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    t = load_task_yaml(tmp_path / "task.yaml")
    cfg = RunConfig(task=t, method="p-tuning", prompt={"template": str(tmp_path / "soft.txt"),
                                                       "verbalizer": str(tmp_path / "v.txt")})
    template, _ = load_pvp(cfg, t, get_method("p-tuning"))
    assert template.num_soft == 1


# --- predict: the input's columns are checked against the run's task before the model loads ----------------

def test_predict_input_without_the_task_text_column(tmp_path, monkeypatch, capsys):
    from mlflow import MlflowClient

    from workbench.runs import RunConfig

    for name, text in task().items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    tree = RunConfig(task=str(tmp_path / "task.yaml"), method="prompt-finetune").to_dict()
    tree["runtime"] = {"template_text": TEMPLATE.strip(), "label_words": [["bad"], ["good"]]}
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")  # the store run_case points the command at
    run_id = client.create_run(client.create_experiment("tiny")).info.run_id
    client.log_dict(run_id, tree, "method/run_config.json")
    client.set_terminated(run_id)
    capsys.readouterr()  # MLflow's own set-up messages
    case = Case("predict-missing-text-column", ["predict", "--run", run_id, "--input", "in.tsv"],
                ["in.tsv", "line 1", "no column 'text'"], {"in.tsv": "review\nnice\n"})
    run_case(case, tmp_path, monkeypatch, capsys)


def test_predict_on_an_instruction_tuning_run_says_what_reads_it(tmp_path, monkeypatch, capsys):
    """`instruct tune` saves its method artifact as `train` does, with a config of another shape: refused in one line
    that names the command to use (the error printer once failed on the config's bare `tune` field)."""
    from mlflow import MlflowClient

    tree = {"tune": {"model": "m", "data": "d.jsonl", "method": "lora"}, "method": {"name": "lora", "r": 8},
            "train": {"lr": 1e-4}, "runtime": {"model_kind": "causal"}}  # the shape `instruct tune` saves
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")  # the store run_case points the command at
    run_id = client.create_run(client.create_experiment("instruct"), tags={"kind": "instruct-tune"}).info.run_id
    client.log_dict(run_id, tree, "method/run_config.json")
    client.set_terminated(run_id)
    capsys.readouterr()  # MLflow's own set-up messages
    case = Case("predict-instruct-run", ["predict", "--run", run_id, "--input", "in.tsv"],
                [f"run {run_id} is an instruction-tuning run", f"`workbench instruct eval --run {run_id}`"],
                {"in.tsv": "text\nnice\n"})
    run_case(case, tmp_path, monkeypatch, capsys)


def test_error_printer_survives_a_bare_section_field():
    from workbench.cli import error_message
    from workbench.errors import ConfigError

    assert error_message(ConfigError("run_config.json: unknown field(s) ['tune']", field="tune")) == \
        "run_config.json: unknown field(s) ['tune']"
