"""The method registry: a method is one self-describing unit that registers itself.

    register_method(Method(
        name="lora", summary="low-rank adapters on attention projections (PEFT)",
        options=LoraOptions, build=build, default_lr=5e-4,
        space=SearchSpace({"train.lr": Float(1e-4, 3e-3, log=True), "method.r": Categorical([4, 8, 16])}),
    ))

`build(ctx, options)` freezes what the method does not train, adds what it does (a head, soft prompts,
adapters) and returns a PromptClassifier. Hooks let a method change the run without the recipe knowing
its name: `rewrite_prompt` (P-tuning adds soft slots; prompt tuning from a pre-trained prompt casts the task into
the prompt's format), `extra_tokens` (prompt tuning's prepended
vectors count against the context), `after_build` (ICL's demonstrations and calibration).

Plugins register the same way, from a module named in `WORKBENCH_PLUGINS` (comma-separated module
names) or an entry point in the group `workbench.methods`; both are imported the first time the
registry is asked for a method.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from workbench.config.fields import MethodOptions
from workbench.config.space import SearchSpace
from workbench.errors import ConfigError, WorkbenchError

if TYPE_CHECKING:
    from workbench.data import FewShotSplit, TaskSpec
    from workbench.models import Backbone, ModelRef
    from workbench.prompts import PromptEncoder, Template, Verbalizer
    from workbench.prompts.verbalizer import LabelWordIds
    from workbench.training import PromptClassifier

PLUGINS_ENV = "WORKBENCH_PLUGINS"
ENTRY_POINT_GROUP = "workbench.methods"


@dataclass
class BuildContext:
    """What a method's build function and hooks see."""

    backbone: Backbone
    task: TaskSpec | None  # None with the "generate" objective: instruction data has no task, template or split
    template: Template | None  # None for methods that read plain input
    verbalizer: Verbalizer | None
    label_words: LabelWordIds | None
    split: FewShotSplit | None
    seed: int
    tracking_uri: str | None = None  # where MLflow runs named by id are read from (a pre-trained prompt's run)
    # True when saved weights replace what is built (`workbench predict`): an initialisation read from elsewhere
    # (a pre-trained prompt) is not needed, and may be gone.
    restoring: bool = False
    # "classify": a head scores the task's classes; "generate": no head, the model's own output layer predicts the
    # next token (instruction tuning; only methods registered with `generates=True` are built so).
    objective: str = "classify"


@dataclass
class RewriteContext:
    """What `rewrite_prompt` sees: the run's choices and the model resolved, before any weights load."""

    options: Any  # the method's options
    task: TaskSpec
    model: ModelRef
    tracking_uri: str | None = None
    restoring: bool = False  # as BuildContext's: the template and words are a saved run's, as it used them


@dataclass(frozen=True)
class Method:
    name: str
    summary: str
    options: type[MethodOptions]
    build: Callable[[BuildContext, Any], PromptClassifier]
    default_lr: float = 1e-5  # train.lr when the run leaves it null
    default_batch_size: int = 8  # train.batch_size when the run leaves it null
    space: SearchSpace = field(default_factory=SearchSpace)  # the default search space of `workbench sweep`
    uses_verbalizer: bool = True  # reads the label words at the template's mask (False: plain input, linear head)
    trains: bool = True  # False: evaluated as built (in-context learning)
    # True: {"soft"} slots in the template are trained (P-tuning); else {"soft": "word"} is read as the word and
    # a bare {"soft"} is refused, since an untrained slot would reach the model as a pad token.
    trains_soft_slots: bool = False
    # Rewrites the template and label words before encoding, with the model resolved but not loaded: P-tuning adds
    # soft slots to a template that has none; prompt tuning from a pre-trained prompt checks that the prompt fits
    # the model and casts the task into the prompt's format.
    rewrite_prompt: Callable[[RewriteContext, Template, Verbalizer], tuple[Template, Verbalizer]] | None = None
    # Positions the method adds to every input (prompt tuning's virtual tokens): they count against the context.
    extra_tokens: Callable[[Any], int] | None = None
    # Runs after build with the model and the encoder, and returns the encoder to use (ICL's demonstrations).
    after_build: Callable[[BuildContext, Any, PromptClassifier, PromptEncoder], PromptEncoder] | None = None
    # True: a job of several models (PET's ensemble and distillation) that runs in place of the one-model run;
    # `build` then builds one of its models. The method says *that* it is a job, not where the job lives: the
    # recipes' job table runs it, and the library never names a recipe.
    own_job: bool = False
    # False: runs with no labelled examples (`shots: 0`) are allowed (zero-shot PET/iPET).
    needs_shots: bool = True
    # True: `build` also works with `ctx.objective == "generate"` (no task, template or split; `make_head` gives
    # None): the method can instruction-tune a causal LM (`workbench instruct tune`).
    generates: bool = False

    def make_options(self, **values: Any) -> MethodOptions:
        """The options object, checked: unknown names and bad values are one-line ConfigErrors."""
        from workbench.config.sections import build_section

        return build_section(self.options, values, "method")


class MethodRegistry:
    """Name -> Method. Refuses duplicates; loads the built-ins and plugins once, on first use."""

    def __init__(self) -> None:
        self._methods: dict[str, Method] = {}
        self._by_options: dict[type, Method] = {}
        self._loaded = False

    def register(self, method: Method) -> Method:
        if not isinstance(method, Method):
            raise TypeError(f"register_method takes a Method, got {type(method).__name__}")
        if method.name in self._methods:
            raise WorkbenchError(f"a method named {method.name!r} is already registered "
                                 f"(by {self._methods[method.name].build.__module__}); choose another name")
        if not (isinstance(method.options, type) and issubclass(method.options, MethodOptions)
                and dataclasses.is_dataclass(method.options)):
            raise WorkbenchError(f"method {method.name!r}: options must be a dataclass subclassing "
                                 f"workbench.MethodOptions")
        if method.options in self._by_options:
            raise WorkbenchError(f"method {method.name!r}: options class {method.options.__name__} already belongs "
                                 f"to {self._by_options[method.options].name!r}; subclass it to give each method "
                                 f"its own")
        undocumented = [f.name for f in dataclasses.fields(method.options) if "help" not in f.metadata]
        if undocumented:
            raise WorkbenchError(f"method {method.name!r}: option(s) {undocumented} are not declared with "
                                 f"workbench.option(default, help=...)")
        method.options()  # the defaults must pass the option's own checks
        self._methods[method.name] = method
        self._by_options[method.options] = method
        return method

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        import workbench.adaptation  # noqa: F401  (the built-in methods register themselves on import)

        for module in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
            try:
                importlib.import_module(module)
            except ImportError as e:
                raise WorkbenchError(f"{PLUGINS_ENV}: cannot import plugin module {module!r}: {e}") from None
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            loaded = ep.load()
            if callable(loaded) and not isinstance(loaded, type):
                loaded()  # an entry point may name a function that registers its methods

    def get(self, name: str) -> Method:
        self._load()
        if name not in self._methods:
            raise ConfigError(f"method: unknown method {name!r}; methods are {', '.join(self._methods)}",
                              field="method")
        return self._methods[name]

    def for_options(self, options: MethodOptions) -> Method:
        self._load()
        method = self._by_options.get(type(options))
        if method is None:
            raise ConfigError(f"method: {type(options).__name__} is not the options class of a registered method "
                              f"(register it with workbench.register_method)", field="method")
        return method

    def all(self) -> dict[str, Method]:
        self._load()
        return dict(self._methods)


REGISTRY = MethodRegistry()


def register_method(method: Method) -> Method:
    """Add a method; a duplicate name is refused. Returns the method, so a module can keep it."""
    return REGISTRY.register(method)


def get_method(name: str) -> Method:
    return REGISTRY.get(name)


def method_for_options(options: MethodOptions) -> Method:
    return REGISTRY.for_options(options)


def all_methods() -> dict[str, Method]:
    return REGISTRY.all()


def freeze(module) -> None:
    for p in module.parameters():
        p.requires_grad_(False)
