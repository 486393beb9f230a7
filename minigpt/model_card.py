"""The README.md model card written into every finished model: Hub metadata (huggingface_hub's ModelCardData),
results, how it was trained, the loss plot and a usage example that runs as written."""

import json
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from minigpt.monitoring import PLOT_FILE, history_rows, logged_samples

_TRAINING_KEYS = (
    "per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate", "lr_scheduler_type",
    "warmup_steps", "weight_decay", "adam_beta1", "adam_beta2", "max_grad_norm", "seed", "bf16",
)

TEMPLATE = """---
{{ card_data }}
---

# {{ title }}

{{ description }}

## Results

{{ results }}
{{ plot }}
## Training hyperparameters

| setting | value |
|---|---|
{{ hyperparameters }}
{{ sample }}
## Usage

```python
{{ usage }}
```

`trust_remote_code=True` runs `modeling_minigpt.py` and `configuration_minigpt.py` from this folder: read them first.
"""


def describe_tokenizer(tokenizer, source: str | None) -> str:
    """The tokenizer the run actually used: its kind, its size, and where it came from when it was not trained here."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    kind = type(backend.model).__name__ if backend is not None else type(tokenizer).__name__
    kind = {"BPE": "byte-level BPE", "WordLevel": "character level"}.get(kind, kind)
    origin = f", from {_shown(source)}" if source else ", trained on the training split"
    return f"{kind}, {len(tokenizer)} tokens{origin}"


def _is_local(name: str) -> bool:
    return Path(name).expanduser().exists()


def _shown(name: str) -> str:
    """A Hub name as is; a local folder by its name only (a card must not carry the author's file system)."""
    return f"the local folder `{Path(name).name}`" if _is_local(name) else f"`{name}`"


def _base_model(name: str | None) -> str | None:
    """The Hub model this run started from: the name itself, or what a local MiniGPT folder's own card says."""
    if not name:
        return None
    if not _is_local(name):
        return name
    card = Path(name) / "README.md"
    return ModelCard.load(card).data.base_model if card.is_file() else None


def _setting(args, key: str):
    value = getattr(args, key)
    return getattr(value, "value", value)  # SchedulerType.COSINE -> "cosine"


def _usage(name: str, tokenizer, prompt: str, context: int) -> str:
    ids = tokenizer(prompt).input_ids[: context // 2]  # the example must fit the context as written
    prompt = tokenizer.decode(ids)
    max_new_tokens = max(1, min(100, context - len(ids)))
    return f"""from transformers import AutoModelForCausalLM, AutoTokenizer

model = AutoModelForCausalLM.from_pretrained({name!r}, trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained({name!r})
inputs = tokenizer({prompt!r}, return_tensors="pt")
output = model.generate(**inputs, max_new_tokens={max_new_tokens})  # samples with generation_config.json's defaults
print(tokenizer.decode(output[0], skip_special_tokens=True))"""


def write_model_card(folder, *, name, model, tokenizer, args, model_args, data_args, source, metrics, log_history,
                     block_size, prompt) -> Path:
    """Write README.md into `folder` (the finished folder being built) for the model called `name`."""
    config = model.config
    params = sum(p.numel() for p in model.parameters())
    started_from = model_args.model_name_or_path
    tokenizer_source = model_args.tokenizer_name or started_from
    base_model = _base_model(started_from)
    dataset_type = data_args.dataset_name or "text"
    eval_results = [
        EvalResult(task_type="text-generation", dataset_type=dataset_type, dataset_name=source, metric_type=kind,
                   metric_name=f"validation {kind}", metric_value=round(metrics[key], 4))
        for key, kind in (("eval_loss", "loss"), ("eval_perplexity", "perplexity")) if key in metrics
    ]
    card_data = ModelCardData(
        model_name=name, base_model=base_model, datasets=[data_args.dataset_name] if data_args.dataset_name else None,
        eval_results=eval_results or None, library_name="transformers", pipeline_tag="text-generation",
        license="mit", tags=["minigpt", "gpt", "causal-lm", "text-generation",
                             "continued-pretraining" if started_from else "from-scratch"],
    )

    evals = [r for r in history_rows(log_history) if r["eval_loss"] != ""]
    results = ["| | validation loss (nats/token) | perplexity |", "|---|---|---|"]
    if evals and evals[0]["step"] == 0:
        results.append(f"| before training (step 0) | {evals[0]['eval_loss']:.4f} | "
                       f"{evals[0]['eval_perplexity']:.2f} |")
    if "eval_loss" in metrics:
        step = evals[-1]["step"] if evals else "?"
        results.append(f"| after training (step {step}) | {metrics['eval_loss']:.4f} | "
                       f"{metrics['eval_perplexity']:.2f} |")
    if "eval_bits_per_byte" in metrics:
        results.append(f"\nValidation bits per byte: {metrics['eval_bits_per_byte']:.4f}.")

    length = ("max_steps", args.max_steps) if args.max_steps > 0 else ("num_train_epochs", args.num_train_epochs)
    rows = [("preset", model_args.preset)] if not started_from else [("started from", _shown(started_from))]
    rows += [("block_size", block_size), length, *((key, _setting(args, key)) for key in _TRAINING_KEYS)]
    if args.lr_scheduler_kwargs:  # e.g. warmup_stable_decay's num_decay_steps, as the Trainer used it
        rows.append(("lr_scheduler_kwargs", json.dumps(args.lr_scheduler_kwargs)))

    arch = (f"{config.num_hidden_layers} layers, {config.num_attention_heads} heads, {config.hidden_size} wide, "
            f"context {config.max_position_embeddings}, vocabulary {config.vocab_size}, {params / 1e6:.2f}M parameters")
    how = f"continued pre-training of {_shown(started_from)}" if started_from else "trained from scratch"
    samples = logged_samples(log_history)
    sample = ""
    if samples:
        s = samples[-1]
        sample = f"\n## Sample (step {s['step']}, greedy)\n\n```\n{s['prompt'] + s['greedy']}\n```\n"
    plot = f"\n![train vs validation loss]({PLOT_FILE})\n" if (Path(folder) / PLOT_FILE).exists() else ""

    card = ModelCard.from_template(
        card_data, template_str=TEMPLATE, title=Path(name).name,
        description=f"A MiniGPT language model, {how} with the Hugging Face Trainer: {arch}.\n"
                    f"Corpus: {source}. Tokenizer: {describe_tokenizer(tokenizer, tokenizer_source)}.",
        results="\n".join(results), plot=plot, hyperparameters="\n".join(f"| {k} | {v} |" for k, v in rows),
        sample=sample, usage=_usage(name, tokenizer, prompt, config.max_position_embeddings),
    )
    path = Path(folder) / "README.md"
    card.save(path)
    return path
