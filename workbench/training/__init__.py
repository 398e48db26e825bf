"""Training components: heads, the classifier that joins backbone and head, and the trainer loop."""

from workbench.training.classifier import PromptClassifier
from workbench.training.heads import LinearHead, VerbalizerHead, label_word_logits
from workbench.training.trainer import TrainerConfig, TrainResult, predict, train

__all__ = [
    "LinearHead", "PromptClassifier", "TrainResult", "TrainerConfig", "VerbalizerHead", "label_word_logits",
    "predict", "train",
]
