"""Fast fp32 generation: a static KV cache, the decoding step compiled with torch.compile, and on a CPU the
matrix-vector products written so that the compiler streams each weight once at memory speed.

At batch 1 every new token multiplies one row of activations by every weight matrix, so a CPU's time per token is
the time to read the weights (55 MB at 6 x 6 x 384). nn.Linear sends a one-row product to BLAS (sgemv), which on
our 2-core CPU host reads well under half as fast as a plain tensor sum, and no faster on two cores than on one
(bench/benchmark.py prints the three speeds). Written as `(x * W).sum(-1)`, inductor fuses the product and the
sum into one loop over W, split across the cores by rows, that reads W nearly as fast as a sum. Only the compiled
one-row product on a CPU changes; eager calls, the prompt (several rows) and GPUs keep nn.Linear's kernel, and the
logits equal the plain path's up to float rounding (tests/test_speed_paths.py).
"""

import torch
from torch import nn
from transformers import CompileConfig


class MatVecLinear(nn.Linear):
    """nn.Linear whose compiled one-row product on a CPU is a fused multiply-and-sum (see the module docstring)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling() and input.device.type == "cpu" and input.shape[:-1].numel() == 1:
            out = (input.unsqueeze(-2) * self.weight).sum(-1)
            return out if self.bias is None else out + self.bias
        return super().forward(input)


def compile_on_any_device() -> CompileConfig:
    """generate()'s torch.compile of the decoding step, also on a CPU (transformers compiles on GPUs only unless
    told)."""
    config = CompileConfig(fullgraph=True, dynamic=False)
    config._compile_all_devices = True
    return config


def compiled_generation(model: nn.Module, fused_products: bool = True) -> dict:
    """Prepares `model` for compiled generation and returns the keyword arguments that turn it on in generate():
    `model.generate(ids, **compiled_generation(model))`.

    With `fused_products` (the default), the model's nn.Linear layers become MatVecLinear in place: the same parameters (tied ones stay tied), the same
    state dict and save_pretrained files, the same eager results. The first generate() call compiles the decoding
    step, and so does a later call that needs a longer cache (prompt + max_new_tokens) than any before: this suits
    many calls of one size (benchmarks, batch jobs) rather than a chat box."""
    for module in model.modules() if fused_products else ():
        if type(module) is nn.Linear:
            module.__class__ = MatVecLinear  # forward is all that changes
    return {"cache_implementation": "static", "compile_config": compile_on_any_device()}
