"""The study's published results, quoted (never measured here): the yardstick every report shows.

The study trained its CNN in Keras (up to 500 epochs, early stopping) and its ViT in PyTorch
(60 epochs), and reported loss, accuracy and weighted F1 on train, validation and test.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PublishedSplit:
    loss: float
    accuracy: float
    f1_weighted: float


# {model: {split: figures}}, exactly as the study printed them (accuracy as a fraction).
PUBLISHED: dict[str, dict[str, PublishedSplit]] = {
    "cnn_seed": {"train": PublishedSplit(0.233, 0.945, 0.944),
                 "val": PublishedSplit(0.275, 0.932, 0.931),
                 "test": PublishedSplit(0.302, 0.921, 0.920)},
    "vit_seed": {"train": PublishedSplit(0.75, 0.71, 0.70),
                 "val": PublishedSplit(16.48, 0.74, 0.72),
                 "test": PublishedSplit(0.31, 0.70, 0.70)},
}

# Why the ViT's validation loss cannot be taken at face value.
VIT_VAL_LOSS_NOTE = (
    "The study's ViT validation loss of 16.48 sits beside a test loss of 0.31 and a validation "
    "accuracy (74%) above the test accuracy (70%): a cross-entropy of 16.48 would mean almost every "
    "validation image got a near-zero probability for its class. It points to an evaluation bug in "
    "the study (for example a loss summed over batches instead of averaged), not to a real "
    "validation loss. Even the test loss is low for 70% accuracy: each of the 30% mistakes alone costs "
    "more than ln 2 = 0.69, i.e. at least 0.21 on average."
)
