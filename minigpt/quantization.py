"""int8 weights for fast generation on a CPU.

Generating one token reads every weight once, so on a CPU the time per token is mostly memory traffic: 55 MB of
fp32 weights at 6 x 6 x 384. Dynamic quantization (PyTorch's) stores each nn.Linear weight in int8 (4x fewer
bytes) and quantizes activations on the fly; generate() is unchanged. On the default model the validation loss
moves by about 0.1% and greedy text stays the same (see bench/README.md). Inference only: the result cannot be
trained or saved with save_pretrained. transformers' GPT-2 keeps its weights in Conv1D layers, which this does
not reach; MiniGPT's are plain nn.Linear.
"""

import warnings

import torch
from torch import nn


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of `model` whose nn.Linear layers (projections and LM head) hold int8 weights; CPU only."""
    with warnings.catch_warnings():
        # torch.ao.quantization announces its move to torchao; it is what the pinned torch ships and it works.
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor.* are deprecated")
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
