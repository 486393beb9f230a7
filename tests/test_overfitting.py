"""Overfitting on purpose (minigpt.overfitting): on a small excerpt, validation loss turns up while training loss
keeps falling; the turn is found, marked on the plot, and early stopping keeps the model of the best evaluation."""

import csv

import pytest

from minigpt import overfitting
from minigpt.corpus import write_excerpt
from minigpt.monitoring import overfitting_turn
from minigpt.training import DataArguments, MiniGPTTrainingArguments, ModelArguments, run_training

# A smaller version of minigpt.overfitting's run: 800 characters to memorise (one character a token), short blocks,
# small batches. Measured on 2 busy CPU cores: validation loss lowest at step 60 of 200 (2.94), 3.09 at the end,
# while training loss falls to 1.95.
MODEL = dict(preset="tiny", tokenizer_type="char")


def _history(folder) -> tuple[list, list]:
    with (folder / "loss_history.csv").open() as f:
        rows = list(csv.DictReader(f))
    return ([(int(r["step"]), float(r["eval_loss"])) for r in rows if r["eval_loss"]],
            [(int(r["step"]), float(r["train_loss"])) for r in rows if r["train_loss"]])


def test_a_small_excerpt_overfits_the_plot_marks_the_turn_and_early_stopping_keeps_the_best(tmp_path):
    train, validation = write_excerpt("machado", tmp_path / "excerpt", 800, 800)
    out = tmp_path / "overfit"
    result = run_training(
        ModelArguments(**MODEL),
        DataArguments(train_file=str(train), validation_file=str(validation), block_size=16, sample_prompts="O"),
        MiniGPTTrainingArguments(output_dir=str(out), max_steps=200, eval_steps=20, logging_steps=5,
                                 per_device_train_batch_size=4, learning_rate=3e-3, seed=5, early_stopping_patience=3,
                                 report_to="none", disable_tqdm=True, dataloader_num_workers=0))
    evals, train = _history(out)
    turn = overfitting_turn(evals, train)
    assert turn is not None, (evals, train)
    best_step, best = min(evals, key=lambda e: e[1])
    assert turn == best_step < evals[-1][0] < 200  # validation turned up, and early stopping ended the run
    assert evals[-1][1] > best + 0.02, evals
    assert train[-1][1] < min(loss for step, loss in train if step <= turn) - 0.1, train  # training kept falling
    assert result.metrics["eval_loss"] == pytest.approx(best, abs=1e-4)  # the best model, kept and evaluated again
    assert (out / "loss_plot.png").stat().st_size > 0


def test_the_turn_needs_validation_up_and_training_down():
    assert overfitting_turn([(0, 5.0), (10, 4.0), (20, 4.5)], [(5, 4.5), (15, 3.0), (20, 2.0)]) == 10
    assert overfitting_turn([(0, 5.0), (10, 4.0), (20, 3.5)], [(5, 4.5), (20, 2.0)]) is None  # still learning
    assert overfitting_turn([(0, 5.0), (10, 4.0), (20, 4.5)], [(5, 4.5), (10, 3.0), (20, 3.5)]) is None  # both up
    assert overfitting_turn([(0, 5.0)], [(5, 4.5)]) is None


def test_the_excerpt_is_small_and_held_out_after_it(tmp_path):
    train, validation = overfitting.excerpt_files("machado", tmp_path)
    train_text, validation_text = train.read_text(), validation.read_text()
    assert overfitting.EXCERPT_CHARS <= len(train_text) < overfitting.EXCERPT_CHARS + 5_000
    assert overfitting.VALIDATION_CHARS <= len(validation_text) < overfitting.VALIDATION_CHARS + 5_000
    assert validation_text.strip()[:200] not in train_text
