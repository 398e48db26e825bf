"""Every registered method through the same contract (scikit-learn's "common tests"): each option is
declared with help and checked when the options are built, each method builds and trains (or predicts)
on a tiny masked LM and a tiny causal LM, and its default search space fits its config. The methods
come from the registry: adding a method adds it here with no change to this file."""

from __future__ import annotations

import dataclasses
import math
import typing

import pytest
import torch

from workbench.adaptation import all_methods, get_method
from workbench.runs import RunConfig
from workbench.runs.config import resolve_path
from workbench.config.fields import MethodOptions, alternatives, meta
from workbench.config.space import candidate_values
from workbench.errors import ConfigError
from workbench.training import TrainerConfig, predict, train

from conftest import build_method

METHODS = sorted(all_methods())


def invalid_values(f: dataclasses.Field, hint) -> list:
    """Values the field's declaration refuses: outside its choices or range, or of the wrong type."""
    kinds = alternatives(hint)
    bad = []
    if meta(f, "choices") is not None:
        bad.append("not-a-choice" if str in kinds else 10**6)
    if meta(f, "min") is not None:
        bad.append(meta(f, "min") - 1)
    if meta(f, "above") is not None:
        bad.append(meta(f, "above"))
    if meta(f, "max") is not None:
        bad.append(meta(f, "max") + 1)
    if (int in kinds or float in kinds) and str not in kinds:
        bad.append("abc")
    if bool in kinds and str not in kinds:
        bad.append("maybe")
    return bad


def constrained_options():
    for name in METHODS:
        options = get_method(name).options
        hints = typing.get_type_hints(options)
        for f in dataclasses.fields(options):
            for value in invalid_values(f, hints[f.name]):
                yield pytest.param(name, f.name, value, id=f"{name}-{f.name}-{value!r}")


def test_registry_has_the_builtin_methods_and_refuses_duplicates():
    from workbench.adaptation import register_method
    from workbench.errors import WorkbenchError

    assert {"finetune", "prompt-finetune", "prompt-tuning", "p-tuning", "prefix-tuning", "p-tuning-v2", "lora",
            "bitfit", "icl"} <= set(METHODS)
    lora = get_method("lora")
    with pytest.raises(WorkbenchError, match="a method named 'lora' is already registered"):
        register_method(dataclasses.replace(lora))


@pytest.mark.parametrize("name", METHODS)
def test_every_option_is_declared_with_help_and_its_defaults_pass(name):
    method = get_method(name)
    assert issubclass(method.options, MethodOptions)
    assert method.summary
    for f in dataclasses.fields(method.options):
        assert meta(f, "help"), f"{name}.{f.name} has no help text"
    method.make_options()  # the defaults pass their own checks


@pytest.mark.parametrize("name, option, value", list(constrained_options()))
def test_invalid_option_value_is_one_line_error_naming_the_option(name, option, value):
    with pytest.raises(ConfigError) as e:
        RunConfig(method={"name": name, option: value})
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(f"method.{option}: {value!r} is not allowed; expected ")
    assert e.value.field == f"method.{option}"


@pytest.mark.parametrize("name", METHODS)
def test_default_search_space_fits_the_config(name):
    method = get_method(name)
    assert method.space.params, f"{name} has no default search space"
    base = RunConfig(method=name)
    for path, spec in method.space.params.items():
        # a dotted path of a run field or a method option, never a short name
        assert path.split(".")[0] in ("prompt", "train", "eval", "method"), f"{name}: {path}"
        assert resolve_path(path, method.options) == path, f"{name}: {path} is not a config field"
        if not method.trains:
            assert not path.startswith("train."), f"{name} does not train but searches {path}"
        for value in candidate_values(spec):  # every value the space can produce passes the field's own checks
            base.with_overrides({path: value})


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("fixture", ["tiny_mlm", "tiny_causal"])
def test_every_option_value_the_default_space_samples_builds(request, fixture, name):
    """A sweep never draws a setting the method cannot build on the model (BitFit without norm gains on a bias-free
    Llama once failed half its trials)."""
    bb = request.getfixturevalue(fixture)
    space = get_method(name).space.params
    for path, spec in space.items():
        if path.startswith("method."):
            for value in candidate_values(spec):
                build_method(bb, name, **{path.removeprefix("method."): value})


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("fixture", ["tiny_mlm", "tiny_causal"])
def test_builds_and_trains_three_steps(request, fixture, name):
    bb = request.getfixturevalue(fixture)
    method = get_method(name)
    _, model, data = build_method(bb, name)  # every method builds at its defaults, on every model
    pad = bb.tokenizer.pad_token_id
    if method.trains:
        before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        assert before, f"{name} left nothing trainable"
        losses = []
        cfg = TrainerConfig(max_steps=3, lr=1e-2, batch_size=4, eval_every=100, progress=False)
        result = train(model, data, [], pad, cfg, on_log=lambda step, m: losses.append(m.get("train/loss")))
        assert result.steps == 3
        logged = [loss for loss in losses if loss is not None]  # evaluation points log no loss
        assert logged and all(math.isfinite(loss) for loss in logged)
        assert any(not torch.equal(p, before[n]) for n, p in model.named_parameters() if p.requires_grad)
    else:
        assert model.count_parameters()[0] == 0
    scores = predict(model, data, pad)
    assert scores.shape == (len(data), 2) and torch.isfinite(torch.from_numpy(scores)).all()


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("fixture", ["tiny_mlm", "tiny_causal"])
def test_trains_with_frozen_weights_held_in_bf16(request, fixture, name, monkeypatch):
    """The CUDA precision path, run on CPU: frozen weights cast to bf16 once, bf16 autocast on. Every method still
    trains (no dtype clash between its fp32 trainable parts and the bf16 body) and scores finite numbers."""
    from workbench.training import trainer

    method = get_method(name)
    if not method.trains:
        pytest.skip("evaluated as built")
    bb = request.getfixturevalue(fixture)
    _, model, data = build_method(bb, name)
    cpu_bf16 = lambda device: torch.autocast(device_type="cpu", dtype=torch.bfloat16)  # noqa: E731
    monkeypatch.setattr(trainer, "_autocast", cpu_bf16)
    # frozen parameters of modules where nothing trains (a module with a trainable bias stays in one dtype)
    frozen = {id(p): p for m in model.modules() if not any(p.requires_grad for p in m.parameters(recurse=False))
              for p in m.parameters(recurse=False)}
    assert trainer.hold_frozen_in_bf16(model) == len(frozen)
    assert all(p.dtype == torch.bfloat16 for p in frozen.values())
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    losses = []
    train(model, data, [], bb.tokenizer.pad_token_id,
          TrainerConfig(max_steps=2, lr=1e-2, batch_size=4, eval_every=100, progress=False),
          on_log=lambda step, m: losses.append(m["train/loss"]))
    assert all(math.isfinite(v) for v in losses)
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)  # fp32 master weights
    assert any(not torch.equal(p, before[n]) for n, p in model.named_parameters() if p.requires_grad)
    assert torch.isfinite(torch.from_numpy(predict(model, data, bb.tokenizer.pad_token_id))).all()


def test_every_method_that_is_a_job_of_its_own_has_one_job_in_the_table():
    """A method says *that* it is a job (own_job); the recipes' table alone says which job: one per such method,
    none for a one-model method, a second registration refused."""
    from workbench.recipes.train import Job, job_for, register_job, train_one_model

    for name, method in all_methods().items():
        job = job_for(RunConfig(method=name))
        assert (job.run is train_one_model) is (not method.own_job), name
    with pytest.raises(Exception, match="already registered"):
        register_job("pet", Job(train_one_model, lambda cfg: None))


def test_a_job_method_without_a_job_is_refused_naming_how_to_register_one(monkeypatch):
    import workbench as wb
    from workbench.adaptation import prompt_finetune
    from workbench.adaptation.registry import REGISTRY
    from workbench.recipes.train import job_for

    @dataclasses.dataclass
    class LoneJobOptions(MethodOptions):
        pass

    method = wb.Method(name="lone-job", summary="a job nobody runs", options=LoneJobOptions,
                       build=prompt_finetune.build, own_job=True)
    all_methods()  # the built-ins loaded, so the copies below hold them
    monkeypatch.setattr(REGISTRY, "_methods", dict(REGISTRY._methods))  # the registration undone after the test
    monkeypatch.setattr(REGISTRY, "_by_options", dict(REGISTRY._by_options))
    wb.register_method(method)
    with pytest.raises(Exception, match="no job runs it.*register_job"):
        job_for(RunConfig(method="lone-job"))
