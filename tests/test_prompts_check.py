"""`check_files`: every problem of every template and verbalizer file, one line each, no model."""

from workbench.data import get_task
from workbench.prompts import Problem, check_files, format_problems
from workbench.prompts.file_check import file_kind


def _write(tmp_path, name, text):
    f = tmp_path / name
    f.write_text(text)
    return f


def test_problem_prints_as_where_colon_message():
    assert str(Problem("t.txt:3", "template has 2 masks")) == "t.txt:3: template has 2 masks"


def test_every_bad_line_of_a_template_file_is_reported(tmp_path):
    f = _write(tmp_path, "t.txt", (
        '# a comment may mention {"mask"} {"mask"}\n'
        '{"placeholder": "text_a"} It was {"mask"}.\n'                                            # 2: fine
        '{"placeholder": "text_a", "post_processing": lambda x: x.swapcase()} {"mask"}\n'          # 3
        '{"placeholder": "text_a"} {"mask"} or {"mask"}\n'                                         # 4
        '\n'
        '{"placeholder": "text_a", "post_processing": lambda x: __import__("os").getcwd()} {"mask"}\n'  # 6
        '{"placeholder": "text_a", "shortenable": False} no mask here\n'                           # 7
        '{"placeholder": "text_a" It was {"mask"}\n'                                               # 8
        '{"placeholder": "text_a", "post_processing": lambda s: s[:-1]} It was {"mask"}\n'         # 9: fine
    ))
    problems = check_files([f])
    assert [p.where for p in problems] == [f"{f}:{n}" for n in (3, 4, 6, 7, 8)]
    assert "not a supported operation" in problems[0].message
    assert problems[1].message == "template has 2 masks; only single-mask templates are supported"
    assert 'no {"mask"}' in problems[3].message
    assert all("\n" not in str(p) for p in problems)


def test_every_bad_line_of_a_verbalizer_file_is_reported(tmp_path):
    f = _write(tmp_path, "sst2_verbalizer.txt", 'bad, awful\ngood,\n\n{"meta": "option1"}\nfine\n')
    problems = check_files([f])
    assert [p.where for p in problems] == [f"{f}:2", f"{f}:3", f"{f}:4"]
    assert ["empty label word" in problems[0].message, "blank line" in problems[1].message,
            "filled from each example" in problems[2].message] == [True, True, True]


def test_all_files_are_checked(tmp_path):
    t = _write(tmp_path, "t.txt", '{"placeholder": "text_a"} {"special": "<nope>"} {"mask"}\n')
    v = _write(tmp_path, "v.txt", "only one class\n")
    j = _write(tmp_path, "v.json", '{"neg": ["bad"], "pos": [""]}')
    problems = check_files([t, v, tmp_path / "missing.txt", j])
    assert [p.where for p in problems] == [f"{t}:1", str(v), str(tmp_path / "missing.txt"), f"{j}:1"]
    assert problems[2].message == "file not found"


def test_file_kind(tmp_path):
    assert file_kind("a/sst2.txt", 'Review: {"placeholder": "text_a"} {"mask"}\n') == "template"
    assert file_kind("a/sst2.txt", "# {\"mask\"}\nbad\ngood\n") == "verbalizer"  # the fragment is in a comment
    assert file_kind("a/generation_verbalizer.txt", '{"text": "No"}\n{"text": "Yes"}\n') == "verbalizer"
    assert file_kind("a/labels.json", '{"neg": ["bad"]}') == "verbalizer"
    assert file_kind("a/t.txt", "{'placeholder': 'text_a'} {'mask'}") == "template"


def test_task_checks_fields_and_classes(tmp_path):
    sst2, rte = get_task("sst2"), get_task("rte")
    t = _write(tmp_path, "t.txt", (
        '{"placeholder": "text_a"} It was {"mask"}.\n'
        '{"placeholder": "text_a"} ? {"mask"}, {"placeholder": "text_b"}\n'
        '{"meta": "sentence"} Topic: {"meta": "topic"} {"mask"}\n'
    ))
    problems = check_files([t], sst2)
    assert [p.where for p in problems] == [f"{t}:2", f"{t}:3"]
    assert "placeholder 'text_b' but task 'sst2' has only 1 text field" in problems[0].message
    assert "meta field 'topic' is not a text field of task 'sst2'" in problems[1].message
    assert [p.where for p in check_files([t], rte)] == [f"{t}:3", f"{t}:3"]  # 'sentence' and 'topic' not rte's

    v = _write(tmp_path, "v.txt", "bad\nokay\ngood\n")
    (problem,) = check_files([v], sst2)
    assert "3 lines of label words, but the task has 2 classes" in problem.message
    assert check_files([v], "sst5")[0].message.startswith("3 lines of label words, but the task has 5 classes")
    assert check_files([_write(tmp_path, "v2.txt", "bad\ngood\n")], sst2) == []


def test_builtin_files_pass_against_their_tasks():
    from workbench import resources

    for task in ("sst2", "sst5", "rte", "trec"):
        files = [resources.template_file(task), resources.verbalizer_file(task)]
        assert check_files(files, get_task(task)) == [], task


def test_format_problems(tmp_path):
    assert format_problems([]) == "no problems found"
    text = format_problems([Problem("a.txt:2", "x"), Problem("a.txt:5", "y"), Problem("b.txt", "z")])
    assert text.splitlines() == ["a.txt:2: x", "a.txt:5: y", "b.txt: z", "3 problems in 2 files"]
