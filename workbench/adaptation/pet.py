"""PET and iPET (Schick & Schütze, EACL 2021): one prompt-based fine-tuned model per pattern-verbalizer pair (PVP)
and repetition, their ensemble's soft labels on unlabelled text, and a classifier distilled from them. iPET
retrains the models for several generations, each on the labelled examples plus pool examples labelled by the
other models of the previous generation.

The job (many models, an ensemble, distillation) is run by the recipes' job table; this module declares the
options and builds one of the job's models, a `prompt-finetune` model of one PVP. Defaults follow PET's code and
paper (../shared/reference/METHODS.md, section 5) except `repetitions` (PET: 3), kept at 1 so a CPU run takes
minutes, and `lm_weight` (PET's flag `--lm_training` is off by default too).
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.adaptation import prompt_finetune
from workbench.adaptation.registry import Method, register_method
from workbench.config import Categorical, Float, MethodOptions, SearchSpace, option
from workbench.config.fields import BATCH_MAX, LR_MAX, ROWS_MAX, STEPS_MAX
from workbench.errors import ConfigError
from workbench.ensemble import REDUCTIONS

STUDENTS = ("classifier", "pvp", "none")


@dataclass
class PetOptions(MethodOptions):
    patterns: str = option("all", help="templates of the template file to train a model each, as 0-based ids "
                                       "separated by commas (0,2,3), or all")
    verbalizers: str | None = option(None, help="verbalizer files separated by commas; every pattern is paired with "
                                                "each; null: the run's verbalizer (prompt.verbalizer)")
    repetitions: int = option(1, min=1, max=100, help="models per PVP, each with its own training seed (PET: 3)")
    reduction: str | None = option(None, choices=REDUCTIONS,
                                   help="ensemble weights: wmean (each model's accuracy on the labelled shots before "
                                        "training) or mean (uniform); null: wmean, or mean with no labelled shots")
    lm_weight: float = option(0.0, min=0, max=0.5,
                              help="weight of the auxiliary language-model loss on unlabelled text (PET: 1e-4); "
                                   "0: off. It costs a second forward and backward pass per step")
    unlabeled: int = option(2000, role="budget", min=1, max=ROWS_MAX,
                            help="unlabelled pool size: drawn with the seed from the task's unlabeled file, or from "
                                 "its training split minus every labelled shot")
    distill: str = option("classifier", choices=STUDENTS,
                          help="the final model, trained on the ensemble's soft labels over the pool: classifier "
                               "(all weights + a linear head, as finetune), pvp (as prompt-finetune, first pattern), "
                               "or none (report the ensemble)")
    distill_steps: int = option(100, role="budget", min=1, max=STEPS_MAX, help="optimizer steps of the distillation")
    distill_batch_size: int = option(16, min=1, max=BATCH_MAX, help="pool examples per distillation step")
    distill_lr: float | None = option(None, above=0, max=LR_MAX,
                                      help="learning rate of the distillation; null: the student "
                                           "method's default")
    temperature: float = option(2.0, above=0, max=1000, help="distillation temperature (PET: 2)")

    def check(self) -> None:
        self.pattern_ids()
        self.verbalizer_files()

    def pattern_ids(self) -> list[int] | None:
        """The chosen template ids, or None for all."""
        if self.patterns.strip() == "all":
            return None
        try:
            ids = [int(p) for p in self.patterns.split(",")]
        except ValueError:
            ids = []
        if not ids or min(ids) < 0 or len(set(ids)) != len(ids):
            raise ConfigError(f"method.patterns: {self.patterns!r} is not allowed; expected all, or distinct "
                              f"template ids >= 0 separated by commas (0,2,3)", field="method.patterns")
        return ids

    def verbalizer_files(self) -> list[str] | None:
        if self.verbalizers is None:
            return None
        files = [v.strip() for v in self.verbalizers.split(",")]
        if not all(files) or len(set(files)) != len(files):
            raise ConfigError(f"method.verbalizers: {self.verbalizers!r} is not allowed; expected distinct file paths "
                              f"separated by commas", field="method.verbalizers")
        return files

    @property
    def generations(self) -> int:
        return 1


@dataclass
class IpetOptions(PetOptions):
    generations: int = option(3, min=2, max=100, help="generations of models; generation 0 is PET's, each later one is "
                                             "trained on data labelled by the one before")
    scale: float = option(5.0, above=1, max=1000, help="growth of each model's training set per generation (PET's d)")
    labeller_fraction: float = option(0.25, above=0, max=1,
                                      help="fraction of the other models of a generation that label data for a model "
                                           "of the next (at least one; PET's lambda)")
    most_likely: int | None = option(None, min=1, max=ROWS_MAX,
                                     help="generation 0 only: label the N pool examples most likely for each class "
                                          "instead of drawing by confidence (PET's README: 100 with no labelled "
                                          "shots)")


SPACE = SearchSpace({"train.lr": Float(5e-6, 1e-4, log=True), "train.batch_size": Categorical([4, 8])})

register_method(Method(
    name="pet", summary="an ensemble of prompt-finetune models, one per PVP, distilled on unlabelled text (PET)",
    options=PetOptions, build=prompt_finetune.build, space=SPACE, own_job=True,
    needs_shots=False,
))
register_method(Method(
    name="ipet", summary="PET retrained for generations on pool data labelled by the other models (iPET)",
    options=IpetOptions, build=prompt_finetune.build, space=SPACE, own_job=True,
    needs_shots=False,
))
