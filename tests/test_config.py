"""The typed config tree: one validator, YAML one-to-one, dotted overrides, flags over the file."""

from __future__ import annotations

import subprocess
import sys
import time

import mlflow
import pytest
import yaml

import workbench as wb
from workbench.cli import main
from workbench.runs import RunConfig
from workbench.config import SearchSpace
from workbench.runs.config import paths_with_role, resolve_path
from workbench.errors import ConfigError

from conftest import no_runs_in_store


def test_yaml_round_trip_is_one_to_one(tmp_path):
    cfg = RunConfig(task="trec", shots=8, method={"name": "lora", "r": 4}, train={"lr": 1e-4, "max_steps": 5},
                    eval={"limit": 10}, tracking={"save": "never"})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    again = RunConfig.from_dict(yaml.safe_load(path.read_text()), str(path))
    assert again == cfg
    assert again.method_name == "lora" and again.method.r == 4 and again.train.lr == 1e-4


def test_yaml_numbers_written_as_text_are_numbers():
    # YAML 1.1 reads 1e-4 as a string; the validator turns it into the float the field declares
    cfg = RunConfig.from_dict(yaml.safe_load("train: {lr: 1e-4}\nmethod: {name: lora, dropout: 1e-1}"))
    assert cfg.train.lr == 1e-4 and cfg.method.dropout == 0.1


@pytest.mark.parametrize("raw, field, message", [
    ({"tracking": {"save": "sometimes"}}, "tracking.save",
     "tracking.save: 'sometimes' is not allowed; expected one of 'auto', 'always', 'never'"),
    ({"train": {"lr": -1}}, "train.lr", "train.lr: -1 is not allowed; expected a number or null > 0"),
    ({"shots": -1}, "shots", "shots: -1 is not allowed; expected an integer in [0, 100000]"),
    ({"max_steps": 3}, "max_steps", "unknown field(s) ['max_steps'] (did you mean train.max_steps?)"),
    ({"train": {"steps": 3}}, "train.steps", "train: unknown field(s) ['steps']"),
    ({"method": {"r": 4}}, "method", "method: a mapping needs 'name'"),
    ({"method": "nope"}, "method", "method: unknown method 'nope'"),
])
def test_bad_fields_are_refused_naming_file_and_field(raw, field, message):
    with pytest.raises(ConfigError) as e:
        RunConfig.from_dict(raw, "c.yaml")
    assert str(e.value).startswith(f"c.yaml: {message}")
    assert "\n" not in str(e.value)
    assert e.value.field == field


def test_dotted_overrides_and_method_change():
    cfg = RunConfig(method={"name": "lora", "r": 4})
    over = cfg.with_overrides({"train.lr": "3e-4", "method.alpha": 8, "seed": 21})
    assert (over.train.lr, over.method.r, over.method.alpha, over.seed) == (3e-4, 4, 8, 21)
    # a new method starts from its own defaults, then its options apply
    other = cfg.with_overrides({"method": "prompt-tuning", "method.num_virtual_tokens": 5})
    assert other.method_name == "prompt-tuning" and other.method.num_virtual_tokens == 5
    with pytest.raises(ConfigError, match="no config section 'trian'"):
        cfg.with_overrides({"trian.lr": 1e-3})


def test_roles_are_field_metadata():
    assert {"task", "model", "shots", "seed"} <= set(paths_with_role("study"))
    assert {"train.max_steps", "train.eval_every", "eval.limit"} <= set(paths_with_role("budget"))
    assert {"tracking.uri", "tracking.progress", "tracking.save"} <= set(paths_with_role("neutral"))
    lora = wb.get_method("lora").options
    assert {"train.lr", "method.r", "prompt.template_id"} <= set(paths_with_role("search", lora))
    assert resolve_path("lr", lora) == "train.lr" and resolve_path("r", lora) == "method.r"
    with pytest.raises(ConfigError, match="'rank' is not a config field"):
        resolve_path("rank", lora)


def test_search_space_yaml_and_command_line_syntax(tmp_path):
    from workbench.config import Categorical, Float, Int, parse_param

    path = tmp_path / "space.yaml"
    path.write_text("params:\n  train.lr: {low: 1.0e-4, high: 1.0e-2, log: true}\n  method.r: {choices: [4, 8]}\n"
                    "  method.alpha: {low: 8, high: 32, step: 8}\n  train.warmup_ratio: 0.06\n")
    space = SearchSpace.from_yaml(path)
    assert space.params == {"train.lr": Float(1e-4, 1e-2, log=True), "method.r": Categorical([4, 8]),
                            "method.alpha": Int(8, 32, step=8), "train.warmup_ratio": 0.06}
    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump(space.to_yaml()))
    assert SearchSpace.from_yaml(again).params == space.params  # to_yaml and from_yaml are inverses
    assert parse_param("lr=1e-5..1e-3:log") == ("lr", Float(1e-5, 1e-3, log=True))
    assert parse_param("enc=lstm|mlp") == ("enc", Categorical(["lstm", "mlp"]))
    assert parse_param("n=2..16") == ("n", Int(2, 16))
    assert parse_param("x=") == ("x", None)
    bad = tmp_path / "bad.yaml"
    bad.write_text("params:\n  train.lr: {low: 1.0, high: 0.1}\n")
    with pytest.raises(ConfigError, match=f"{bad}: parameter 'train.lr' needs low <= high"):
        SearchSpace.from_yaml(bad)


def test_flag_typed_wins_over_the_file(tmp_path):
    from workbench.cli import build_parser
    from workbench.cli.runs import run_config

    path = tmp_path / "c.yaml"
    path.write_text("shots: 8\nseed: 21\nmethod: {name: lora, r: 4}\ntrain: {max_steps: 7}\n")
    args = build_parser().parse_args(["train", "--config", str(path), "--shots", "16", "method.r=2"])
    cfg = run_config(args)
    assert (cfg.shots, cfg.seed, cfg.method.r, cfg.train.max_steps) == (16, 21, 2, 7)
    # a flag left out does not reset the file's value to the flag's default
    cfg = run_config(build_parser().parse_args(["train", "--config", str(path)]))
    assert cfg.shots == 8


@pytest.mark.parametrize("argv, expected", [
    (["--method", "lora", "--option", "r=abc"], "method.r (--option r=...): 'abc' is not allowed; expected an "
                                                "integer in [1, 1024]"),
    (["--method", "lora", "--option", "r=0"], "method.r (--option r=...): 0 is not allowed"),
    (["--method", "icl", "--option", "demos_per_class=-1"], "method.demos_per_class (--option demos_per_class=...): "
                                                            "-1 is not allowed; expected an integer in [0, 64]"),
    (["--lr", "-3"], "train.lr (--lr): -3 is not allowed"),
    (["--save", "sometimes"], "tracking.save (--save): 'sometimes' is not allowed; expected one of 'auto', "
                              "'always', 'never'"),
])
def test_cli_refuses_bad_values_in_one_line_quickly_with_no_run(argv, expected, tmp_path):
    # The model named is a folder that does not exist: had anything tried to resolve or load a model before the
    # value was refused, the error would be about the model, not the value. (The time bound below only catches a
    # hang: on a loaded 2-core machine the interpreter's start-up alone takes seconds.)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "workbench", "train", "--model", str(tmp_path / "no-such-model"),
                           *argv], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    seconds = time.perf_counter() - start
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("error:") or "Traceback" in ln]
    assert len(lines) == 1 and expected in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert "no-such-model" not in proc.stderr
    assert seconds < 20, f"{seconds:.1f} s"
    assert no_runs_in_store(tmp_path)  # no MLflow run was made


def test_cli_refuses_bad_config_file_value(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("tracking: {save: sometimes}\n")
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (f"error: {path}: tracking.save (--save): 'sometimes' is not allowed; expected one of "
                           f"'auto', 'always', 'never'")
    assert mlflow.search_runs(search_all_experiments=True).empty


def test_public_api_names_have_docstrings():
    for name in ("RunConfig", "train", "sweep", "compare", "register_method", "methods", "tasks", "load_task",
                 "SweepConfig", "CompareConfig", "Method", "MethodOptions", "option", "SearchSpace"):
        obj = getattr(wb, name)
        assert obj.__doc__, name
    assert "lora" in wb.methods() and "sst2" in wb.tasks()
    assert wb.load_task("sst2") is wb.tasks()["sst2"]


def test_example_files_in_experiments_load():
    from pathlib import Path

    from workbench.recipes.sweep import SweepConfig, search_space

    root = Path(__file__).resolve().parents[1] / "experiments"
    cfg = RunConfig.from_dict(yaml.safe_load((root / "lora-sst2.yaml").read_text()), "lora-sst2.yaml")
    assert cfg.method_name == "lora" and cfg.train.lr == 5e-4
    sweep = SweepConfig(run=RunConfig(method="p-tuning"), space=str(root / "p-tuning-space.yaml"))
    space = search_space(sweep, wb.get_method("p-tuning"))
    assert set(space.params) == {"train.lr", "method.prompt_encoder", "method.num_soft", "train.warmup_ratio"}


def test_same_method_flag_keeps_the_file_options(tmp_path):
    from workbench.cli import build_parser
    from workbench.cli.runs import run_config

    path = tmp_path / "c.yaml"
    path.write_text("method: {name: lora, r: 4}\n")
    assert run_config(build_parser().parse_args(["train", "--config", str(path), "--method", "lora"])).method.r == 4
    other = run_config(build_parser().parse_args(["train", "--config", str(path), "--method", "bitfit"]))
    assert other.method_name == "bitfit"


# --- every number has bounds: a typo never reaches a run as inf, 1e30 or 8 million --------------------------

def declared_classes() -> list[type]:
    """Every config section and method options class: the recipes and methods imported, `Section` walked."""
    import dataclasses
    import importlib
    import pkgutil

    from workbench.adaptation import all_methods
    from workbench.config.fields import Section

    for module in pkgutil.walk_packages(wb.__path__, "workbench."):
        if module.name.startswith(("workbench.recipes.", "workbench.adaptation.", "workbench.runs.")):
            importlib.import_module(module.name)
    found: list[type] = [m.options for m in all_methods().values()]
    todo = [Section]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if dataclasses.is_dataclass(cls) and cls not in found:
            found.append(cls)
    return found


def numeric_fields():
    import typing

    from workbench.config.fields import alternatives, declared_fields, meta

    for cls in declared_classes():
        hints = typing.get_type_hints(cls)
        for f in declared_fields(cls):
            kinds = [inner for k in alternatives(hints[f.name])
                     for inner in (typing.get_args(k) if typing.get_origin(k) in (list, tuple) else (k,))]
            if (int in kinds or float in kinds) and meta(f, "choices") is None:
                yield pytest.param(cls, f, hints[f.name], id=f"{cls.__name__}.{f.name}")


def test_the_walk_finds_every_kind_of_section():
    names = {cls.__name__ for cls in declared_classes()}
    assert {"TrainConfig", "RunConfig", "SweepConfig", "CompareConfig", "LoraOptions", "PretrainConfig",
            "TuneConfig", "CotEvalConfig"} <= names


@pytest.mark.parametrize("cls, f, hint", list(numeric_fields()))
def test_every_number_field_has_an_upper_bound_and_refuses_infinity(cls, f, hint):
    from workbench.config.fields import alternatives, check_value, meta

    assert meta(f, "max") is not None, f"{cls.__name__}.{f.name} has no upper bound (option(..., max=...))"
    with pytest.raises(ConfigError, match=r"x\.y: .* is not allowed; expected"):
        check_value(f, hint, meta(f, "max") + 1, "x.y")
    if float in alternatives(hint):
        for value in (float("inf"), float("-inf"), "inf", float("nan")):
            with pytest.raises(ConfigError, match="is not allowed"):
                check_value(f, hint, value, "x.y")


def test_a_list_of_seeds_holds_each_seed_to_the_bounds():
    from workbench.recipes.compare import CompareConfig

    with pytest.raises(ConfigError, match=r"compare.seeds: \[13, 4294967296\] is not allowed"):
        CompareConfig(seeds=[13, 2**32])
    assert CompareConfig(seeds=[0, 2**32 - 1]).seeds == [0, 2**32 - 1]
