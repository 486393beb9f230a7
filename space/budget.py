"""The hosted Space's limits, computed before any work starts: a training's peak memory from its settings, the
wall-time budget, and the longest text a visitor may send.

The memory estimate (float32 training with AdamW, as the app runs it) counts
    parameters x 16 bytes          weights, gradients and AdamW's two moments
    activations                    batch x block x layers x (~16 x width + 2 x intermediate) floats kept for backward
    attention scores               batch x heads x block x block per layer, for the attention kernels that build them
    logits                         batch x block x vocab, three times (logits, their log-softmax and the gradient)
    evaluation logits              the evaluation batch's logits and their log-softmax (no gradient)
    the process itself             torch, transformers and the corpus: a fixed base measured on a CPU Space
It is meant to be a little high, never low: the app refuses a run whose estimate is over MINIGPT_APP_MAX_MEMORY_GB.
"""

import os
from dataclasses import dataclass

from minigpt.arguments import ModelArguments, model_config
from minigpt.loading import count_parameters

GB = 1024**3
FLOAT = 4  # bytes; the app trains in float32 on the CPU
EVAL_LOGITS_BYTES = GB
PROCESS_BASE = 1.2 * GB  # a training process with torch + transformers + datasets imported and a corpus loaded

# A cpu-basic Space has 16 GB: the web server, the untrained model and a few generations need ~2 GB, training
# gets the rest with room to spare.
DEFAULT_MAX_MEMORY_GB = 8.0
DEFAULT_MAX_MINUTES = 30.0
DEFAULT_MAX_PROMPT_CHARS = 4000  # far more than any model's context in tokens; checked before tokenizing
DEFAULT_MAX_HUB_MB = 50.0  # a Hub dataset's files, checked before downloading: the Space's disk is small
DEFAULT_MAX_UPLOADS_MB = 50.0  # every upload waiting in Gradio's folder at once, all visitors together


@dataclass(frozen=True)
class MemoryEstimate:
    parameters: int
    total_bytes: int
    parts: dict  # name -> bytes

    @property
    def gigabytes(self) -> float:
        return self.total_bytes / GB

    def largest_part(self) -> str:
        return max(self.parts, key=self.parts.get)


def estimate_training_memory(preset: str, vocab_size: int, block_size: int, batch_size: int,
                             eval_batch_size: int | None = None) -> MemoryEstimate:
    """Peak memory of a training run with these settings, computed from the shapes alone (nothing allocated): the
    model is the one the pipeline would build (minigpt.arguments.model_config), its weights counted by
    minigpt.loading.count_parameters."""
    config = model_config(ModelArguments(preset=preset, vocab_size=vocab_size), block_size, vocab_size=vocab_size)
    width, layers, heads = config.hidden_size, config.num_hidden_layers, config.num_attention_heads
    parameters = count_parameters(config)
    tokens = batch_size * block_size
    eval_tokens = (eval_batch_size or batch_size) * block_size
    parts = {
        "parameters": parameters * 4 * FLOAT,
        "activations": tokens * layers * (16 * width + 2 * config.intermediate_size) * FLOAT,
        "attention": batch_size * heads * block_size * block_size * layers * FLOAT,
        "logits": 3 * tokens * vocab_size * FLOAT,
        "evaluation": 2 * eval_tokens * vocab_size * FLOAT,
        "process": int(PROCESS_BASE),
    }
    return MemoryEstimate(parameters, int(sum(parts.values())), parts)


def eval_batch_size(batch_size: int, block_size: int, vocab_size: int) -> int:
    """The evaluation batch: 32 sequences (fast), fewer where their logits would pass 1 GB, never below the
    training batch (which the budget has already accepted)."""
    fits = max(1, EVAL_LOGITS_BYTES // (block_size * vocab_size * FLOAT))
    return max(batch_size, min(32, fits))


def which_setting_to_lower(estimate: MemoryEstimate) -> str:
    """The form setting that drives the largest part of the estimate."""
    return {"parameters": "vocab_size", "activations": "batch_size", "attention": "block_size",
            "logits": "batch_size", "evaluation": "batch_size", "process": "preset"}[estimate.largest_part()]


def _env_float(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name) or default)
    except ValueError:
        raise SystemExit(f"{name}={os.environ.get(name)!r} is not a number") from None
    if value <= 0:
        raise SystemExit(f"{name} must be positive, got {value}")
    return value


@dataclass(frozen=True)
class Limits:
    """What one visitor's action may use. From the environment (MINIGPT_APP_*) unless given."""

    max_memory_gb: float = DEFAULT_MAX_MEMORY_GB
    max_minutes: float = DEFAULT_MAX_MINUTES
    max_runs: int = 20
    max_runs_per_visitor: int = 3  # a visitor's new run replaces their own oldest beyond this
    max_waiting: int = 8
    max_waiting_per_client: int = 2  # trainings queued or running from one network address
    max_prompt_chars: int = DEFAULT_MAX_PROMPT_CHARS
    max_hub_mb: float = DEFAULT_MAX_HUB_MB
    max_uploads_mb: float = DEFAULT_MAX_UPLOADS_MB

    @classmethod
    def from_env(cls, **given) -> "Limits":
        values = dict(
            max_memory_gb=_env_float("MINIGPT_APP_MAX_MEMORY_GB", DEFAULT_MAX_MEMORY_GB),
            max_minutes=_env_float("MINIGPT_APP_MAX_MINUTES", DEFAULT_MAX_MINUTES),
            max_runs=int(_env_float("MINIGPT_APP_MAX_RUNS", 20)),
            max_runs_per_visitor=int(_env_float("MINIGPT_APP_MAX_RUNS_PER_VISITOR", 3)),
            max_waiting=int(_env_float("MINIGPT_APP_MAX_QUEUE", 8)),
            max_waiting_per_client=int(_env_float("MINIGPT_APP_MAX_QUEUE_PER_CLIENT", 2)),
            max_prompt_chars=int(_env_float("MINIGPT_APP_MAX_PROMPT_CHARS", DEFAULT_MAX_PROMPT_CHARS)),
            max_hub_mb=_env_float("MINIGPT_APP_MAX_HUB_MB", DEFAULT_MAX_HUB_MB),
            max_uploads_mb=_env_float("MINIGPT_APP_MAX_UPLOADS_MB", DEFAULT_MAX_UPLOADS_MB),
        )
        values.update({k: v for k, v in given.items() if v is not None})
        return cls(**values)
