"""One training step by hand (minigpt.one_step) is the Trainer's step: same loss, same weights after it."""

import csv
import math

import pytest
import torch
from safetensors.torch import load_file
from test_training import corpus_file

from minigpt.one_step import first_step, training_step_by_hand
from minigpt.run_folder import INITIAL_DIR
from minigpt.training import DataArguments, MiniGPTTrainingArguments, ModelArguments, run_training

MODEL = dict(preset="tiny", config_overrides="n_embd=32,n_layer=2,n_head=2", vocab_size=300)


def _arguments(out, **extra) -> MiniGPTTrainingArguments:
    # the Trainer's first step at the peak learning rate: no warmup, a constant schedule
    return MiniGPTTrainingArguments(output_dir=str(out), max_steps=1, logging_steps=1, per_device_train_batch_size=4,
                                    learning_rate=3e-3, warmup_steps=0, lr_scheduler_type="constant",
                                    report_to="none", disable_tqdm=True, seed=11, dataloader_num_workers=0, **extra)


def test_one_step_by_hand_is_the_trainers_first_step(tmp_path):
    data = DataArguments(train_file=str(corpus_file(tmp_path)), block_size=32)
    start = first_step(ModelArguments(**MODEL), data, _arguments(tmp_path / "by-hand"))
    initial = {name: p.detach().clone() for name, p in start.model.named_parameters()}
    step = training_step_by_hand(start)

    assert step.batch_shape == (4, 32) and len(step.positions) == 4
    assert step.loss == pytest.approx(step.model_loss, abs=1e-5)
    assert abs(step.loss - step.uniform_loss) < 0.5  # random weights: close to a uniform guess
    assert {"embed_tokens", "embed_positions", "layers.0", "layers.1", "norm"} == set(step.grad_norms)
    assert all(norm > 0 for norm in step.grad_norms.values())
    assert all(change > 0 for change in step.weight_changes.values())
    assert step.loss_after < step.loss  # one step on this batch lowers its loss

    out = tmp_path / "trainer"
    run_training(ModelArguments(**MODEL), data, _arguments(out))
    with (out / "loss_history.csv").open() as history:
        trainer_loss = next(float(row["train_loss"]) for row in csv.DictReader(history) if row["step"] == "1")
    assert math.isclose(trainer_loss, step.loss, abs_tol=1e-4), (trainer_loss, step.loss)

    before, after = load_file(out / INITIAL_DIR / "model.safetensors"), load_file(out / "model.safetensors")
    for name, weight in start.model.state_dict().items():
        if name in before:  # the tied lm_head is saved once, as the embeddings
            assert torch.equal(before[name], initial[name]), name  # the same start
            assert torch.allclose(after[name], weight, atol=1e-6), name  # the same step
