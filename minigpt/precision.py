"""Which precision and kernels train fastest here, chosen by the device and the work of one optimizer step.

On a GPU a small model is bound by the host (kernel launches): bf16 autocast adds cast kernels and ran slower than
fp32 there (bench/results-cuda.md), while a large one is bound by its matrix multiplies, where bf16 is many times
faster. So `--precision auto` (the default) estimates how long one step's matmuls take in plain fp32 on this device
and picks:

    CUDA, step matmuls >= MIXED_PRECISION_FROM_SECONDS   bf16 autocast (Ampere and newer), else fp16 + loss scaling
                                                         (e.g. Colab's T4)
    CUDA, below that; CPU; MPS                           fp32: the baseline path itself, so never slower than it

`--compile auto` turns on torch.compile (through TrainingArguments.torch_compile) on CUDA GPUs of compute
capability 8.0 and newer from COMPILE_FROM_SECONDS of matmul work per step; below that compiling cost more than it
saved. Every choice can be forced: `--precision fp32|tf32|bf16|fp16`, `--compile true|false`; transformers' own
`--bf16`, `--fp16`, `--tf32`, `--torch_compile` still work and win over `auto`.
"""

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache

import torch

from minigpt.throughput import measured_matmul_peak, training_flops_per_token

logger = logging.getLogger("minigpt")

PRECISIONS = ("auto", "fp32", "tf32", "bf16", "fp16")
COMPILE_CHOICES = ("auto", "true", "false")

# Thresholds on the strict-fp32 matmul time of one optimizer step (batch 32: tiny 0.5-0.7 ms, small 2-3 ms, base
# 13-14 ms, gpt2 410-420 ms), from the H100 runs in bench/results-cuda.md (bench/speed_defaults.py): bf16 lost to
# fp32 at tiny in both runs, was not faster at small, won at base and gpt2; torch.compile lost at base and won at
# gpt2. TF32 at the small sizes was inside the host noise (0.7x to 1.2x), so `auto` does not pick it.
MIXED_PRECISION_FROM_SECONDS = 0.008
COMPILE_FROM_SECONDS = 0.05


@dataclass(frozen=True)
class DeviceInfo:
    """What the choice needs to know about the device; tests build one for a GPU they don't have."""

    type: str  # "cuda", "cpu", "mps"
    name: str = ""
    capability: tuple[int, int] = (0, 0)  # CUDA compute capability
    fp32_flops: float = 0.0  # measured plain-fp32 matmul peak, FLOP/s
    cpu_half: tuple[str, ...] = ()  # CPU: the half precisions its matmuls run in hardware (AVX-512 BF16/FP16, AMX)

    @property
    def has_bf16(self) -> bool:  # bf16 tensor cores: Ampere (8.0) and newer
        return self.type == "cuda" and self.capability >= (8, 0) or "bf16" in self.cpu_half

    @property
    def has_fp16(self) -> bool:  # fp16 tensor cores: Volta (7.0) and newer, the T4 (7.5) included
        return self.type == "cuda" and self.capability >= (7, 0) or "fp16" in self.cpu_half


@dataclass(frozen=True)
class SpeedPlan:
    precision: str  # one of PRECISIONS but "auto"
    torch_compile: bool
    reason: str


def detect_device(device: torch.device) -> DeviceInfo:
    if device.type == "cpu":
        half = (("bf16",) if torch.ops.mkldnn._is_mkldnn_bf16_supported() else ()) + (
            ("fp16",) if torch.ops.mkldnn._is_mkldnn_fp16_supported() else ())
        return DeviceInfo("cpu", cpu_half=half)
    if device.type != "cuda":
        return DeviceInfo(device.type)
    return DeviceInfo("cuda", torch.cuda.get_device_name(device), torch.cuda.get_device_capability(device),
                      peak_flops("cuda", "fp32"))


def set_tf32_matmul(enabled: bool) -> None:
    """TF32 for CUDA fp32 matmuls, through the matmul's own setting: it wins over the global one that
    TrainingArguments' --tf32 sets, so that an earlier run in this process cannot leak into this one."""
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):  # torch >= 2.9; mixing in the legacy allow_tf32 API is an error there
        matmul.fp32_precision = "tf32" if enabled else "ieee"
    else:
        matmul.allow_tf32 = enabled


@contextmanager
def _tf32(enabled: bool):
    matmul = torch.backends.cuda.matmul
    previous = matmul.fp32_precision if hasattr(matmul, "fp32_precision") else matmul.allow_tf32
    set_tf32_matmul(enabled)
    try:
        yield
    finally:
        if hasattr(matmul, "fp32_precision"):
            matmul.fp32_precision = previous
        else:
            matmul.allow_tf32 = previous


def _emulated_rate(dtype: torch.dtype) -> float | None:
    """A CPU without native bf16/fp16 matmuls emulates them, hundreds of times slower than fp32: one small product
    tells, and its rate is then the peak (the full measurement would take many minutes)."""
    n = 512
    a = torch.randn(n, n, dtype=dtype)
    start = time.perf_counter()
    (a @ a).sum().item()
    seconds = time.perf_counter() - start
    return 2 * n**3 / seconds if seconds > 0.1 else None


@cache
def peak_flops(device_type: str, precision: str) -> float:
    """The measured matmul peak of this precision on this device: the denominator of MFU."""
    if precision in ("bf16", "fp16") and device_type == "cpu":
        emulated = _emulated_rate(torch.bfloat16 if precision == "bf16" else torch.float16)
        if emulated:
            return emulated
    if precision in ("bf16", "fp16"):
        return measured_matmul_peak(device_type, torch.bfloat16 if precision == "bf16" else torch.float16)
    if device_type != "cuda":
        return measured_matmul_peak(device_type, torch.float32)
    with _tf32(precision == "tf32"):
        return measured_matmul_peak.__wrapped__(device_type, torch.float32)  # uncached: the TF32 switch matters


def choose_plan(device: DeviceInfo, flops_per_step: float, precision: str = "auto", compile: str = "auto") -> SpeedPlan:
    """The fastest path for `flops_per_step` of training work on `device`; forced values are kept as given (the
    arguments have checked them against PRECISIONS and COMPILE_CHOICES)."""
    seconds = flops_per_step / device.fp32_flops if device.type == "cuda" and device.fp32_flops else 0.0
    work = f"{seconds * 1000:.1f} ms of fp32 matmuls per step on {device.name or device.type}"
    reason = [f"forced {precision}" if precision != "auto" else work]
    if precision == "auto":
        if device.type != "cuda":
            precision = "fp32"
        elif seconds >= MIXED_PRECISION_FROM_SECONDS and (device.has_bf16 or device.has_fp16):
            precision = "bf16" if device.has_bf16 else "fp16"
        else:
            precision = "fp32"
    if compile == "auto":
        use_compile = device.capability >= (8, 0) and seconds >= COMPILE_FROM_SECONDS
    else:
        use_compile = compile == "true"
        reason.append(f"forced compile={compile}")
    return SpeedPlan(precision, use_compile, "; ".join(reason))


def force_flags(args) -> None:
    """`--precision X` and `--compile true|false` -> transformers' own flags, before TrainingArguments checks them."""
    if args.precision not in ("auto", "bf16") and args.bf16 or args.precision not in ("auto", "fp16") and args.fp16:
        raise ValueError(f"--precision {args.precision} contradicts --bf16/--fp16; pass only one of them")
    if args.precision in ("bf16", "fp16"):
        setattr(args, args.precision, True)
    elif args.precision in ("fp32", "tf32"):
        args.tf32 = args.precision == "tf32"
    if args.compile != "auto":
        args.torch_compile = args.compile == "true"


def precision_of(args) -> str:
    """The precision transformers' flags in `args` select."""
    if args.bf16:
        return "bf16"
    if args.fp16:
        return "fp16"
    return "tf32" if args.tf32 else "fp32"


def plan_training(args, config, block_size: int, device: DeviceInfo | None = None) -> SpeedPlan:
    """Resolve `auto` for this model on this device. `args` are read, not changed: the Trainer gets a copy made from
    the plan (minigpt.training.build_trainer)."""
    device = device or detect_device(args.device)
    tokens = args.per_device_train_batch_size * args.gradient_accumulation_steps * block_size
    flops_per_step = training_flops_per_token(config, block_size) * tokens
    explicit = args.bf16 or args.fp16 or args.tf32 is not None
    precision = precision_of(args) if explicit else "auto"
    compile = "true" if args.torch_compile else args.compile
    plan = choose_plan(device, flops_per_step, precision, compile)
    logger.info("precision %s, torch.compile %s (%s)", plan.precision, "on" if plan.torch_compile else "off",
                plan.reason)
    native = {"bf16": device.has_bf16, "fp16": device.has_fp16}
    if device.type == "cpu" and not native.get(plan.precision, True):
        logger.warning("%s on a CPU without %s in hardware: its matmuls are emulated, many times slower than fp32 "
                       "(use --precision fp32, or auto)", plan.precision, plan.precision)
    return plan


__all__ = [
    "DeviceInfo", "SpeedPlan", "choose_plan", "detect_device", "force_flags", "peak_flops", "plan_training",
    "precision_of",
]
