from collections import Counter

import pytest

from workbench.errors import ConfigError, WorkbenchError
from workbench.data import few_shot_split, get_task, load_task_yaml

from conftest import requires_data


@requires_data("sst2")
def test_same_seed_same_examples_and_disjoint_dev():
    task = get_task("sst2")
    a, b = few_shot_split(task, 16, 13), few_shot_split(task, 16, 13)
    assert a.ids == b.ids and a.fingerprint == b.fingerprint
    assert Counter(e.label for e in a.train) == {0: 16, 1: 16}
    assert Counter(e.label for e in a.dev) == {0: 16, 1: 16}
    assert not set(a.ids["train"]) & set(a.ids["dev"])
    c = few_shot_split(task, 16, 21)
    assert c.fingerprint != a.fingerprint and set(c.ids["train"]) != set(a.ids["train"])


@requires_data("trec")
def test_multiclass_split_and_too_many_shots():
    task = get_task("trec")
    s = few_shot_split(task, 8, 42)
    assert Counter(e.label for e in s.train) == {c: 8 for c in range(6)}
    with pytest.raises(WorkbenchError, match="only"):
        few_shot_split(task, 50, 42)  # ABBR has 86 rows: not enough for 50 train + 50 dev


def test_user_task_yaml(tmp_path):
    (tmp_path / "train.tsv").write_text("text\ttopic\n" + "".join(f"row {i}\t{'ab'[i % 2]}\n" for i in range(20)))
    (tmp_path / "test.tsv").write_text("text\ttopic\nrow x\ta\n")
    y = tmp_path / "task.yaml"
    y.write_text("name: mine\nfiles: {train: train.tsv, test: test.tsv}\ntext_fields: [text]\nlabel_field: topic\n"
                 "label_names: [alpha, beta]\nlabel_values: [a, b]\n")
    task = load_task_yaml(y)
    assert task.eval_split == "test" and task.num_classes == 2
    split = few_shot_split(task, 4, 1)
    assert len(split.train) == 8 and split.train[0].fields["text"].startswith("row")


@pytest.mark.parametrize("body, problem", [
    ("name: x\nfiles: {train: nope.tsv}\ntext_fields: [t]\nlabel_names: [a]\n", "files.train: .* does not exist"),
    ("name: x\nfiles: {train: train.tsv}\nlabel_names: [a]\n", "missing required field 'text_fields'"),
    ("name: x\nfiles: {train: train.tsv}\ntext_fields: [t]\nlabel_names: [a]\nmetric: bleu\n", "field 'metric'"),
    ("name: x\nfiles: {train: train.tsv}\ntext_fields: [t]\nlabel_names: [a]\ncolour: red\n", r"unknown field\(s\) \['colour'\]"),
])
def test_user_task_errors_name_the_field(tmp_path, body, problem):
    (tmp_path / "train.tsv").write_text("t\tlabel\nx\ta\n")
    y = tmp_path / "task.yaml"
    y.write_text(body)
    with pytest.raises(ConfigError, match=problem):
        load_task_yaml(y)


def test_bad_label_in_data_names_file_and_line(tmp_path):
    (tmp_path / "train.tsv").write_text("t\tlabel\nx\ta\ny\tzzz\n")
    y = tmp_path / "task.yaml"
    y.write_text("name: x\nfiles: {train: train.tsv}\ntext_fields: [t]\nlabel_names: [a, b]\n")
    with pytest.raises(ConfigError, match=r"train.tsv: line 3: label 'zzz' is not one of"):
        load_task_yaml(y).load_split("train")
