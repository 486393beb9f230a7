"""How fast, against what limit: model FLOPs per token and the device's measured matrix-multiply peak.

MFU (model FLOPs utilisation) = achieved model FLOP/s / the device's peak. The peak is measured, not looked up,
so the figure is honest on any CPU or GPU; the same numbers serve the training log and the benchmark.
"""

import time
from functools import cache

import torch


def training_flops_per_token(config, seq_len: int) -> float:
    """Forward + backward FLOPs per token (PaLM appendix B): 6 per weight that touches the token, plus attention's
    q.k and a.v products (12 * layers * width * context). Position embeddings are a lookup, not a matmul."""
    h, layers = config.hidden_size, config.num_hidden_layers
    inner = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) or 4 * h  # GPT-2 too
    per_layer = 4 * h * h + 2 * h * inner  # qkv + out projection, MLP up + down
    weights = layers * per_layer + h * config.vocab_size  # + the LM head
    return 6 * weights + 12 * layers * h * seq_len


@cache
def measured_matmul_peak(device_type: str = "cpu", dtype: torch.dtype = torch.float32) -> float:
    """Best FLOP/s of a square matmul on this device, measured once per process (about half a second)."""
    n = 8192 if device_type != "cpu" else 1024 if dtype == torch.float32 else 2048  # each near its best size
    a = torch.randn(n, n, device=device_type, dtype=dtype)
    b = torch.randn(n, n, device=device_type, dtype=dtype)
    best = float("inf")
    for _ in range(20):  # the best of many: another process on the machine only slows some of them
        if device_type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        (a @ b).sum().item()  # .item(): wait for the result on any device
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def mfu(tokens_per_second: float, config, seq_len: int, peak_flops: float) -> float:
    return tokens_per_second * training_flops_per_token(config, seq_len) / peak_flops
