"""Overfitting on purpose, the chapter's warning made to happen in about two CPU minutes: a small excerpt of a
built-in corpus, many passes over it (an epoch is a few steps), a model big enough to memorise it. Training loss
keeps falling while validation loss turns up; minigpt.monitoring.overfitting_turn finds the step, the loss plot
marks it, and --early_stopping_patience stops there and keeps the best model. The app's "see overfitting" choice
and the notebooks take these settings.

Measured (bench/README.md): validation loss lowest at step 49 of 150, 41 s into the run on 2 CPU cores shared with
other work (26 CPU seconds), clearly higher by step 63 (48 s), while training loss falls to 0.13.
"""

from pathlib import Path

from minigpt.corpus import write_excerpt

EXCERPT_CHARS = 12_000  # trained on: about 5,000 tokens, 5 steps an epoch
VALIDATION_CHARS = 8_000  # the paragraphs right after the excerpt
EVALUATIONS = 20  # the turn needs points on both sides

# The run, by the settings' own names (ModelArguments, DataArguments, MiniGPTTrainingArguments)
MODEL = {"preset": "tiny", "vocab_size": 1024}
DATA = {"block_size": 64}
TRAINING = {"max_steps": 150, "per_device_train_batch_size": 16, "learning_rate": 3e-3}


def excerpt_files(corpus: str, folder) -> tuple[Path, Path]:
    """The excerpt of the built-in `corpus` to overfit on, written into `folder`: (train file, validation file)."""
    return write_excerpt(corpus, folder, EXCERPT_CHARS, VALIDATION_CHARS)
