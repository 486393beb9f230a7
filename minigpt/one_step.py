"""One training step written out by hand, in plain PyTorch, on the model, batch and optimizer a run starts with:

    forward pass (logits) -> cross entropy of the batch -> loss.backward() (gradients)
      -> gradient clipping -> optimizer.step() (weights move) -> the loss on the same batch again

It is the step the Trainer repeats (tests/test_one_step.py holds the Trainer's first logged loss and its weights
after one step equal to these). The model, the batch and the optimizer are the Trainer's own: the run's pipeline
(minigpt.training.prepare_run, build_trainer), its first batch (Trainer.get_train_dataloader) and its optimizer
(Trainer.create_optimizer), at the run's peak learning rate (the Trainer's schedule may start lower, in warmup).
"""

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from minigpt.arguments import DataArguments, MiniGPTTrainingArguments, ModelArguments
from minigpt.teaching import display_token
from minigpt.training import build_trainer, prepare_run


@dataclass
class StepStart:
    """A run's first step, before it is taken: its model (initial weights), tokenizer, first batch and optimizer."""

    model: torch.nn.Module
    tokenizer: object
    batch: dict
    optimizer: torch.optim.Optimizer
    learning_rate: float
    max_grad_norm: float


@dataclass
class Position:
    """One position of the batch's first sequence in the forward pass: what the model reads, the true next token,
    its logit and probability, and the model's top guesses."""

    context: str
    target: str
    target_logit: float
    target_probability: float
    top: list[tuple[str, float]]  # (token, probability)


@dataclass
class StepByHand:
    batch_shape: tuple[int, int]  # sequences x tokens
    vocab_size: int
    positions: list[Position]
    loss: float  # cross entropy of the batch before the step (nats/token), F.cross_entropy on the logits
    model_loss: float  # the same, as the model computes it (labels=input_ids): what the Trainer minimises
    grad_norms: dict[str, float]  # per layer, after loss.backward()
    total_grad_norm: float  # of all the weights, before clipping to max_grad_norm
    learning_rate: float
    max_grad_norm: float
    weight_changes: dict[str, float] = field(default_factory=dict)  # per layer: norm of (after - before)
    relative_changes: dict[str, float] = field(default_factory=dict)  # per layer: that over the norm of before
    loss_after: float = math.nan  # the same batch, after optimizer.step()

    @property
    def uniform_loss(self) -> float:
        """ln(V): the cross entropy of a uniform guess among the vocabulary."""
        return math.log(self.vocab_size)


def first_step(model_args: ModelArguments, data_args: DataArguments, args: MiniGPTTrainingArguments) -> StepStart:
    """What a run with these settings starts with: the model its pipeline makes (the same initial weights), the
    first batch its Trainer draws, and the optimizer its Trainer makes."""
    start = prepare_run(model_args, data_args, args, model_args.model_name_or_path)
    trainer = build_trainer(start.model, start.tokenizer, args, start.chunks["train"], start.chunks["validation"],
                            start.block_size)
    batch = next(iter(trainer.get_train_dataloader()))
    optimizer = trainer.create_optimizer()
    return StepStart(trainer.model, start.tokenizer, batch, optimizer, args.learning_rate, args.max_grad_norm)


def layer_of(parameter_name: str) -> str:
    """The layer a weight belongs to: 'model.layers.3.mlp.up_proj.weight' -> 'layers.3'; embeddings and the final
    norm by their own names."""
    parts = parameter_name.removeprefix("model.").split(".")
    return ".".join(parts[:2]) if parts[0] == "layers" else parts[0]


def _group_norms(tensors: dict[str, torch.Tensor]) -> dict[str, float]:
    """The norm of each layer's tensors together (the square root of the sum of their squared norms)."""
    squares: dict[str, float] = {}
    for name, tensor in tensors.items():
        layer = layer_of(name)
        squares[layer] = squares.get(layer, 0.0) + float(tensor.detach().float().pow(2).sum())
    return {layer: math.sqrt(total) for layer, total in squares.items()}


def batch_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The mean surprise of every next token of the batch: position t predicts token t+1."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100)


def _positions(logits: torch.Tensor, input_ids: torch.Tensor, tokenizer, count: int, top: int) -> list[Position]:
    """`count` positions of the first sequence, spread over it."""
    ids = input_ids[0].tolist()
    length = len(ids) - 1
    chosen = sorted({round(i * (length - 1) / max(1, count - 1)) for i in range(count)}) if count > 1 else [0]
    positions = []
    for t in chosen:
        probabilities = logits[0, t].float().softmax(-1)
        best = probabilities.topk(top)
        positions.append(Position(
            context=tokenizer.decode(ids[max(0, t - 7): t + 1]), target=display_token(tokenizer, ids[t + 1]),
            target_logit=float(logits[0, t, ids[t + 1]]), target_probability=float(probabilities[ids[t + 1]]),
            top=[(display_token(tokenizer, i), float(p)) for p, i in zip(best.values.tolist(), best.indices.tolist())],
        ))
    return positions


def training_step_by_hand(start: StepStart, positions: int = 4, top: int = 3) -> StepByHand:
    """Take one training step on `start` (its model and optimizer change: the step is real) and report it."""
    model, batch, optimizer = start.model, start.batch, start.optimizer
    model.train()
    input_ids, labels = batch["input_ids"], batch["labels"]

    # 1. the forward pass: a score (logit) for every token of the vocabulary, at every position
    output = model(input_ids=input_ids, labels=labels)
    logits = output.logits
    # 2. the cross entropy of the batch, by hand; the model's own loss is the same number
    loss = batch_cross_entropy(logits, labels)
    # 3. backpropagation: the gradient of the loss with respect to every weight
    optimizer.zero_grad()
    loss.backward()
    weights = {name: p for name, p in model.named_parameters() if p.requires_grad}
    grad_norms = _group_norms({name: p.grad for name, p in weights.items() if p.grad is not None})
    total = torch.nn.utils.clip_grad_norm_(list(weights.values()), start.max_grad_norm)  # as the Trainer does
    # 4. the optimizer's update
    before = {name: p.detach().clone() for name, p in weights.items()}
    optimizer.step()
    moved = {name: p.detach() - before[name] for name, p in weights.items()}
    # 5. the same batch again
    with torch.no_grad():
        loss_after = batch_cross_entropy(model(input_ids=input_ids).logits, labels)

    changes, sizes = _group_norms(moved), _group_norms(before)
    return StepByHand(
        batch_shape=tuple(input_ids.shape), vocab_size=logits.shape[-1],
        positions=_positions(logits.detach(), input_ids, start.tokenizer, positions, top),
        loss=loss.item(), model_loss=output.loss.item(), grad_norms=grad_norms,
        total_grad_norm=float(total), learning_rate=start.learning_rate, max_grad_norm=start.max_grad_norm,
        weight_changes=changes, relative_changes={k: v / sizes[k] if sizes[k] else 0.0 for k, v in changes.items()},
        loss_after=float(loss_after),
    )
