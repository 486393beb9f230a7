"""Muon + AdamW and the warmup-stable-decay schedule: the right parameters in each optimizer, checkpoints that
resume, the schedule's shape."""

import shutil
from itertools import pairwise

import pytest
import torch
from conftest import make_tiny_model
from safetensors.torch import load_file
from test_training import TINY, corpus_file, run_cli
from transformers import get_scheduler

from minigpt.optimizers import MuonWithAdamW, hidden_matrix_names
from minigpt.training import MiniGPTTrainingArguments, build_trainer


def test_muon_gets_the_hidden_matrices_and_adamw_the_rest():
    model = make_tiny_model().train()
    names = set(hidden_matrix_names(model))
    expected = {f"model.layers.{i}.{m}.weight" for i in range(2)
                for m in ("self_attn.qkv_proj", "self_attn.o_proj", "mlp.up_proj", "mlp.down_proj")}
    assert names == expected  # not the embeddings, not the (tied) LM head, no LayerNorm, no bias

    optimizer = MuonWithAdamW.for_model(model, lr=1e-3, muon_lr=1e-3, weight_decay=0.1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ids = torch.randint(2, 64, (4, 16), generator=torch.Generator().manual_seed(0))
    model(ids, labels=ids).loss.backward()
    optimizer.step()

    by_param = {p: n for n, p in model.named_parameters()}
    in_muon = {by_param[p] for p in optimizer.muon.state}
    in_adamw = {by_param[p] for p in optimizer.adamw.state}
    assert in_muon == expected
    assert in_adamw == set(before) - expected
    assert all("momentum_buffer" in s for s in optimizer.muon.state.values())
    assert all("exp_avg" in s for s in optimizer.adamw.state.values())
    for name, param in model.named_parameters():
        assert not torch.equal(param, before[name]), f"{name} was not updated"
    decayed = [g for g in optimizer.adamw.param_groups if g["weight_decay"] > 0]
    assert {by_param[p] for g in decayed for p in g["params"]} == {"model.embed_tokens.weight",
                                                                   "model.embed_positions.weight"}


def test_muon_is_torchs_update_orthogonalised_in_fp32_on_a_cpu():
    """The same algorithm as torch.optim.Muon (bit for bit in bf16), in fp32 on a CPU: closer to the exact
    orthogonalisation than torch's bf16, with torch's state (a checkpoint of either resumes in the other)."""
    from torch.optim._muon import _zeropower_via_newtonschulz  # torch's own, to compare with

    from minigpt.optimizers import Muon, orthogonalise

    torch.manual_seed(0)
    grad = torch.randn(96, 32)
    coefficients, steps, eps = (3.4445, -4.7750, 2.0315), 5, 1e-7
    assert torch.equal(orthogonalise(grad, coefficients, steps, eps, torch.bfloat16),
                       _zeropower_via_newtonschulz(grad, coefficients, steps, eps))
    ours, theirs = torch.nn.Parameter(torch.randn(96, 32)), torch.nn.Parameter(torch.randn(96, 32))
    with torch.no_grad():
        theirs.copy_(ours)
    mine, torchs = (cls([p], lr=0.02, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")
                    for cls, p in ((Muon, ours), (torch.optim.Muon, theirs)))
    exact = orthogonalise(grad.lerp(0.05 * grad, 0.95), coefficients, steps, eps, torch.float64)
    expected = ours.detach().double() * (1 - 0.02 * 0.1) - 0.02 * 0.2 * 96 ** 0.5 * exact
    for param, optimizer in ((ours, mine), (theirs, torchs)):
        param.grad = grad.clone()
        optimizer.step()
    assert (ours.double() - expected).abs().max() < 1e-5 < (theirs.double() - expected).abs().max()
    assert torch.allclose(ours, theirs, atol=5e-3)  # the same update, up to torch's bf16
    assert torch.equal(mine.state[ours]["momentum_buffer"], torchs.state[theirs]["momentum_buffer"])


def test_warmup_stable_decay_schedule_scales_both_optimizers():
    optimizer = MuonWithAdamW.for_model(make_tiny_model(), lr=1e-3, muon_lr=1e-2, weight_decay=0.1)
    scheduler = get_scheduler("warmup_stable_decay", optimizer, num_warmup_steps=10, num_training_steps=100,
                              scheduler_specific_kwargs={"num_decay_steps": 30})
    lrs = []
    for _ in range(100):
        lrs.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    adamw = [lr[0] for lr in lrs]
    assert adamw[0] == 0 and adamw[5] == pytest.approx(5e-4)  # linear warmup
    assert adamw[10:70] == [pytest.approx(1e-3)] * 60  # stable
    assert all(a > b for a, b in pairwise(adamw[70:]))  # decays...
    assert adamw[-1] < 1e-5  # ...to zero
    for lr in lrs:  # Muon's lr follows the same curve at its own peak
        assert lr[-1] == pytest.approx(10 * lr[0])
    assert [g["lr"] for g in optimizer.muon.param_groups] == [optimizer.param_groups[-1]["lr"]]


def test_muon_run_resumes_from_a_checkpoint_to_the_same_weights(tmp_path):
    corpus = corpus_file(tmp_path)
    flags = ["--train_file", corpus, "--max_steps", 20, "--save_steps", 10, "--eval_steps", 20,
             "--eval_on_start", "false", "--vocab_size", 300, "--optim", "muon", "--muon_learning_rate", 0.02,
             "--lr_scheduler_type", "warmup_stable_decay", "--lr_scheduler_kwargs", '{"num_decay_steps": 8}', *TINY]
    reference = tmp_path / "reference"
    assert run_cli("--output_dir", reference, *flags) == 0
    assert set(torch.load(reference / "checkpoint-10" / "optimizer.pt", weights_only=True)) == {"adamw", "muon"}

    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(reference / "checkpoint-10", resumed / "checkpoint-10")  # as if killed after step 10
    assert run_cli("--output_dir", resumed, *flags) == 0
    expected, got = load_file(reference / "model.safetensors"), load_file(resumed / "model.safetensors")
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-5, msg=name)


@pytest.mark.parametrize("scheduler_kwargs, stable_until", [(None, 70), ({"num_decay_steps": 10}, 90)])
def test_warmup_stable_decay_decays_over_the_last_fraction_by_default(tmp_path, scheduler_kwargs, stable_until):
    """`--lr_scheduler_type warmup_stable_decay` needs no scheduler kwargs: the Trainer decays over the last
    `decay_fraction` of the steps; an explicit num_decay_steps wins."""
    extra = {"lr_scheduler_kwargs": scheduler_kwargs} if scheduler_kwargs else {}
    args = MiniGPTTrainingArguments(output_dir=str(tmp_path), max_steps=100, warmup_steps=10, learning_rate=1e-3,
                                    lr_scheduler_type="warmup_stable_decay", decay_fraction=0.3, eval_strategy="no",
                                    **extra)
    trainer = build_trainer(make_tiny_model(), None, args, None, None, block_size=16)
    trainer.create_optimizer_and_scheduler(num_training_steps=100)
    lrs = []
    for _ in range(100):
        lrs.append(trainer.lr_scheduler.get_last_lr()[0])
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    assert lrs[10:stable_until] == [pytest.approx(1e-3)] * (stable_until - 10)
    assert lrs[stable_until + 1] < 1e-3 and all(a > b for a, b in pairwise(lrs[stable_until:]))
    assert lrs[-1] < 1e-4
