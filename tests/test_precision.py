"""The precision/kernel choice (minigpt/precision.py): decided per device and model size, every choice forceable,
and the mixed-precision path trains to the same loss as fp32."""

import json
import logging

import pytest
from test_training import TINY

import train
from configuration_minigpt import MiniGPTConfig
from minigpt.precision import COMPILE_FROM_SECONDS, MIXED_PRECISION_FROM_SECONDS, DeviceInfo, choose_plan, plan_training
from minigpt.throughput import training_flops_per_token
from minigpt.training import MiniGPTTrainingArguments, trainer_arguments

H100 = DeviceInfo("cuda", "NVIDIA H100", (9, 0), fp32_flops=50e12)
T4 = DeviceInfo("cuda", "Tesla T4", (7, 5), fp32_flops=8e12)
V100_LIKE_WITHOUT_FP16 = DeviceInfo("cuda", "old", (6, 1), fp32_flops=10e12)
CPU = DeviceInfo("cpu")


def step_flops(preset: str, batch: int = 32, vocab: int = 8192) -> float:
    config = MiniGPTConfig.from_preset(preset, vocab_size=vocab)
    return training_flops_per_token(config, config.max_position_embeddings) * batch * config.max_position_embeddings


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_host_bound_models_on_a_bf16_gpu_stay_on_the_fp32_path(preset):
    plan = choose_plan(H100, step_flops(preset))
    assert (plan.precision, plan.torch_compile) == ("fp32", False)
    assert "ms of fp32 matmuls per step" in plan.reason


def test_larger_models_on_a_bf16_gpu_use_bf16_and_the_largest_compile():
    assert (choose_plan(H100, step_flops("base")).precision, choose_plan(H100, step_flops("base")).torch_compile) == (
        "bf16", False)
    plan = choose_plan(H100, step_flops("gpt2"))
    assert (plan.precision, plan.torch_compile) == ("bf16", True)


def test_the_switches_happen_at_the_thresholds():
    at = lambda seconds: choose_plan(H100, seconds * H100.fp32_flops)
    assert at(0.99 * MIXED_PRECISION_FROM_SECONDS).precision == "fp32"
    assert at(1.01 * MIXED_PRECISION_FROM_SECONDS).precision == "bf16"
    assert not at(0.99 * COMPILE_FROM_SECONDS).torch_compile and at(1.01 * COMPILE_FROM_SECONDS).torch_compile


def test_a_gpu_without_bf16_uses_fp16_with_loss_scaling_and_no_compile():
    plan = choose_plan(T4, step_flops("gpt2"))
    assert (plan.precision, plan.torch_compile) == ("fp16", False)
    assert choose_plan(T4, 1e6).precision == "fp32"  # no TF32 on a T4 either
    assert choose_plan(V100_LIKE_WITHOUT_FP16, step_flops("gpt2")).precision == "fp32"


def test_cpu_default_is_fp32_without_compile():
    assert choose_plan(CPU, step_flops("gpt2")) == choose_plan(CPU, 1.0)
    assert (choose_plan(CPU, 1.0).precision, choose_plan(CPU, 1.0).torch_compile) == ("fp32", False)


@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16", "fp16"])
def test_a_forced_precision_is_kept(precision):
    assert choose_plan(H100, step_flops("gpt2"), precision=precision).precision == precision
    assert choose_plan(H100, step_flops("tiny"), precision=precision).precision == precision


def test_forced_compile_is_kept():
    assert choose_plan(H100, step_flops("gpt2"), compile="false").torch_compile is False
    assert choose_plan(H100, step_flops("tiny"), compile="true").torch_compile is True


@pytest.mark.parametrize("choice", [{"precision": "fp8"}, {"compile": "maybe"}])
def test_unknown_choice_is_a_clear_error(tmp_path, choice):
    with pytest.raises(ValueError, match=f"--{next(iter(choice))} must be one of: auto, "):
        MiniGPTTrainingArguments(output_dir=str(tmp_path), **choice)


def test_the_plan_makes_the_trainers_own_validated_copy_of_the_arguments(tmp_path):
    args = MiniGPTTrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=32, push_to_hub=True,
                                    hub_token="unused")
    config = MiniGPTConfig.from_preset("gpt2", vocab_size=8192)
    plan = plan_training(args, config, 1024, device=H100)
    assert plan.precision == "bf16"
    copy = trainer_arguments(args, plan)
    assert (copy.bf16, copy.mixed_precision, copy.torch_compile, copy.torch_compile_backend, copy.push_to_hub) == (
        True, "bf16", True, "inductor", False)
    assert (args.bf16, args.mixed_precision, args.torch_compile, args.push_to_hub) == (False, "no", False, True)


@pytest.mark.parametrize("cpu_half", [(), ("bf16",)])
def test_forced_bf16_on_a_cpu_without_it_warns(tmp_path, caplog, cpu_half):
    args = MiniGPTTrainingArguments(output_dir=str(tmp_path), precision="bf16")
    with caplog.at_level(logging.WARNING, logger="minigpt"):
        plan = plan_training(args, MiniGPTConfig.from_preset("tiny", vocab_size=512), 64,
                             device=DeviceInfo("cpu", cpu_half=cpu_half))
    assert plan.precision == "bf16"  # forced is forced, but not silently slow
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    expected = ("bf16 on a CPU without bf16 in hardware: its matmuls are emulated, many times slower than fp32 "
                "(use --precision fp32, or auto)")
    assert warned == ([] if cpu_half else [expected])


def test_transformers_flags_win_over_auto(tmp_path):
    args = MiniGPTTrainingArguments(output_dir=str(tmp_path), fp16=False, torch_compile=False, compile="false")
    args.tf32 = False  # as `--tf32 false` on a GPU
    plan = plan_training(args, MiniGPTConfig.from_preset("gpt2", vocab_size=8192), 1024, device=H100)
    assert (plan.precision, plan.torch_compile) == ("fp32", False)


def test_contradictory_flags_exit_2(capsys):
    assert train.main(["--precision", "fp32", "--bf16", "true", "--output_dir", "unused"]) == 2
    assert "--precision fp32 contradicts" in capsys.readouterr().err


def test_mixed_precision_path_trains_to_fp32_loss(tmp_path):
    """bf16 autocast (the path `auto` picks for large models; CPU autocast here) ends within 3 % of fp32. A model
    of 64 wide and one evaluation: on a CPU without bf16 in hardware every bf16 matmul is emulated."""
    corpus = tmp_path / "corpus.txt"
    words = ["o", "modelo", "aprende", "o", "proximo", "token", "de", "um", "texto", "lendo", "o", "muitas", "vezes",
             "com", "calma"]
    corpus.write_text("\n\n".join(" ".join(words[(i + j) % len(words)] for j in range(14)) for i in range(150)))
    losses = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        assert train.main(["--train_file", str(corpus), "--output_dir", str(out), *map(str, TINY), "--vocab_size",
                           "300", "--max_steps", "30", "--eval_steps", "30", "--save_steps", "30",
                           "--eval_on_start", "false", "--max_eval_samples", "32", "--precision", precision]) == 0
        losses[precision] = json.loads((out / "all_results.json").read_text())["eval_loss"]
    assert losses["bf16"] != losses["fp32"]  # the two runs really took different paths
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.03), losses
