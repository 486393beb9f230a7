"""Muon for the hidden weight matrices, AdamW for the rest: one optimizer object for the Trainer.

Muon (torch.optim.Muon) orthogonalises each 2-D update with a few Newton-Schulz steps, so every direction of a
weight matrix learns at the same rate; on small GPTs it reaches a given loss in fewer steps than AdamW. It only
takes 2-D matrices that map hidden states to hidden states: the projections inside the blocks. The embeddings (and
the LM head tied to them), LayerNorms and biases stay on AdamW.

The Trainer drives one optimizer: `MuonWithAdamW` holds both and shows their parameter groups as its own, so the
learning-rate scheduler scales both, and saves both states in the checkpoint's optimizer.pt, so resuming works.
Selected with `--optim muon` (see minigpt.training.MiniGPTTrainingArguments).

torch.optim.Muon runs its Newton-Schulz steps in bf16, which CPUs without bf16 arithmetic emulate: on this project's
2-core CPU that made a Muon step of the 4 x 4 x 128 model cost 0.056 s against AdamW's 0.003 (the forward and
backward pass: ~0.09 s). `Muon` below is torch.optim.Muon with the same update (its state, groups and
defaults too), orthogonalised in fp32 on a CPU (the step: 0.026 s there) and in bf16 on a GPU, as torch does.
"""

import math

import torch
from torch import nn
from transformers.trainer_pt_utils import get_parameter_names

NO_DECAY_PATTERNS = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]  # the Trainer's


def hidden_matrix_names(model: nn.Module) -> list[str]:
    """Names of the 2-D weights that Muon trains: every matrix except the embeddings and the output head."""
    excluded = {id(module.weight) for module in model.modules() if isinstance(module, nn.Embedding)}
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if output is not None:
        excluded.add(id(output.weight))
    return [name for name, p in model.named_parameters() if p.ndim == 2 and id(p) not in excluded and p.requires_grad]


def orthogonalise(update: torch.Tensor, coefficients: tuple[float, float, float], steps: int, eps: float,
                  dtype: torch.dtype) -> torch.Tensor:
    """Muon's quintic Newton-Schulz iteration (Keller Jordan's, as in torch.optim.Muon): `update` with its singular
    values pushed near 1, computed in `dtype`."""
    a, b, c = coefficients
    wide = update.size(0) <= update.size(1)
    x = update.to(dtype) if wide else update.to(dtype).T  # iterate on the Gram matrix of the shorter side
    x = x / x.norm().clamp(min=eps)  # spectral norm at most 1
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x if wide else x.T


class Muon(torch.optim.Muon):
    """torch.optim.Muon's update, orthogonalised in fp32 on a CPU (bf16 elsewhere, as torch does): see above."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum, decay = group["lr"], group["momentum"], group["weight_decay"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                buffer = self.state[param].setdefault("momentum_buffer", torch.zeros_like(grad))
                buffer.lerp_(grad, 1 - momentum)
                update = grad.lerp(buffer, momentum) if group["nesterov"] else buffer
                dtype = torch.float32 if param.device.type == "cpu" else torch.bfloat16
                update = orthogonalise(update, group["ns_coefficients"], group["ns_steps"], group["eps"], dtype)
                param.mul_(1 - lr * decay)
                param.add_(update.to(param.dtype), alpha=-lr * lr_ratio(group["adjust_lr_fn"], *param.shape))
        return loss


def lr_ratio(adjust_lr_fn: str | None, rows: int, columns: int) -> float:
    """torch.optim.Muon's learning-rate scale for a rows x columns matrix."""
    if adjust_lr_fn == "match_rms_adamw":  # updates of the RMS AdamW's would have (Moonlight)
        return 0.2 * math.sqrt(max(rows, columns))
    if adjust_lr_fn in (None, "original"):
        return math.sqrt(max(1, rows / columns))
    return 1.0


class MuonWithAdamW(torch.optim.Optimizer):
    """Muon (above) on `muon_params`, torch.optim.AdamW on `adamw_groups`, stepped together.

    `param_groups` is the two optimizers' groups (AdamW's first, so the logged learning rate is AdamW's): a
    scheduler that scales each group's lr reaches both. Muon's lr is scaled per matrix as in the Moonlight paper
    (adjust_lr_fn="match_rms_adamw"), so its updates have the size AdamW's would have.
    """

    def __init__(self, muon_params, adamw_groups, lr: float, muon_lr: float, weight_decay: float,
                 betas=(0.9, 0.999), eps: float = 1e-8, momentum: float = 0.95):
        self.muon = Muon(muon_params, lr=muon_lr, weight_decay=weight_decay, momentum=momentum,
                         adjust_lr_fn="match_rms_adamw")
        self.adamw = torch.optim.AdamW(adamw_groups, lr=lr, betas=betas, eps=eps)
        groups = self.adamw.param_groups + self.muon.param_groups
        super().__init__([{"params": g["params"]} for g in groups], {})
        self.param_groups = groups  # the very dicts the two optimizers read their lr from

    def step(self, closure=None):
        loss = self.adamw.step(closure)  # the closure, if any, is evaluated once, by AdamW
        self.muon.step()
        return loss

    def zero_grad(self, set_to_none: bool = True):
        self.adamw.zero_grad(set_to_none)
        self.muon.zero_grad(set_to_none)

    def state_dict(self):
        return {"adamw": self.adamw.state_dict(), "muon": self.muon.state_dict()}

    def load_state_dict(self, state_dict):
        self.adamw.load_state_dict(state_dict["adamw"])
        self.muon.load_state_dict(state_dict["muon"])
        self.param_groups = self.adamw.param_groups + self.muon.param_groups

    @classmethod
    def for_model(cls, model: nn.Module, lr: float, muon_lr: float, weight_decay: float, **kwargs) -> "MuonWithAdamW":
        """Split `model`'s parameters: hidden matrices to Muon; the rest to AdamW, with weight decay on the
        embeddings only (not on LayerNorms and biases), as the Trainer does."""
        muon_names = set(hidden_matrix_names(model))
        decay_names = set(get_parameter_names(model, [nn.LayerNorm], NO_DECAY_PATTERNS))
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        muon = [p for n, p in named if n in muon_names]
        decay = [p for n, p in named if n not in muon_names and n in decay_names]
        no_decay = [p for n, p in named if n not in muon_names and n not in decay_names]
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return cls(muon, [g for g in groups if g["params"]], lr=lr, muon_lr=muon_lr, weight_decay=weight_decay,
                   **kwargs)


def muon_optimizer_cls_and_kwargs(args) -> tuple:
    """For the Trainer's `optimizer_cls_and_kwargs`: a factory (not an Optimizer class) that transformers calls as
    factory()(model, **kwargs)."""
    muon_lr = args.learning_rate if args.muon_learning_rate is None else args.muon_learning_rate
    kwargs = {"lr": args.learning_rate, "muon_lr": muon_lr, "weight_decay": args.weight_decay,
                  "betas": (args.adam_beta1, args.adam_beta2), "eps": args.adam_epsilon}
    return (lambda: MuonWithAdamW.for_model), kwargs
