"""How fast, against what limit: model FLOPs per token and the device's measured matrix-multiply peak.

MFU (model FLOPs utilisation) = achieved model FLOP/s / the device's peak. The peak is measured, not looked up,
so the figure is honest on any CPU or GPU; the same numbers serve the training log and the benchmark.
"""

import time
from functools import cache

import torch

from minigpt.loading import count_parameters


def training_flops_per_token(config, seq_len: int) -> float:
    """Forward + backward FLOPs per token (PaLM appendix B): 6 per weight that touches the token (every weight but
    the embeddings, which are lookups; the LM head too, which is the token embedding again when tied), plus
    attention's q.k and a.v products (12 * layers * width * context)."""
    h, layers = config.hidden_size, config.num_hidden_layers
    weights = count_parameters(config, exclude_embeddings=True)
    if config.tie_word_embeddings:  # the LM head is a matmul with the (excluded) token embedding
        weights += h * config.vocab_size
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
