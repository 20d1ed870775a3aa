"""Training, evaluation, checkpoints and early stopping as plain functions and tiny objects."""
