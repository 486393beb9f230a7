"""The README.md model card written next to every finished model: Hub metadata, results, how it was trained,
the loss plot and how to use it."""

from pathlib import Path

from minigpt.monitoring import PLOT_FILE, history_rows

_TRAINING_KEYS = (
    "max_steps", "num_train_epochs", "per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate",
    "lr_scheduler_type", "warmup_steps", "weight_decay", "adam_beta1", "adam_beta2", "max_grad_norm", "seed", "bf16",
)


def _yaml_list(items) -> str:
    return "".join(f"\n- {item}" for item in items)


def write_model_card(output_dir, *, model, args, model_args, data_args, source, metrics, log_history, samples,
                     block_size) -> Path:
    config = model.config
    name = Path(output_dir).name
    params = sum(p.numel() for p in model.parameters())
    datasets_meta = f"\ndatasets:{_yaml_list([data_args.dataset_name])}" if data_args.dataset_name else ""
    evals = [r for r in history_rows(log_history) if r["eval_loss"] != ""]
    first, last = (evals[0], evals[-1]) if evals else (None, None)

    results = ["| | validation loss (nats/token) | perplexity |", "|---|---|---|"]
    if first is not None and first["step"] == 0:
        results.append(f"| before training (step 0) | {first['eval_loss']:.4f} | {first['eval_perplexity']:.2f} |")
    if "eval_loss" in metrics:
        results.append(f"| after training (step {metrics.get('global_step', last['step'] if last else '?')}) | "
                       f"{metrics['eval_loss']:.4f} | {metrics['eval_perplexity']:.2f} |")
    if "eval_bits_per_byte" in metrics:
        results.append(f"\nValidation bits per byte: {metrics['eval_bits_per_byte']:.4f}.")

    hyper = "\n".join(f"| {key} | {getattr(args, key)} |" for key in _TRAINING_KEYS)
    arch = (f"{config.num_hidden_layers} layers, {config.num_attention_heads} heads, {config.hidden_size} wide, "
            f"context {config.max_position_embeddings}, vocabulary {config.vocab_size}, {params / 1e6:.2f}M parameters")
    sample_text = ""
    if samples:
        s = samples[-1]
        sample_text = f"\n## Sample (step {s['step']}, greedy)\n\n```\n{s['prompt'] + s['greedy']}\n```\n"
    plot = f"\n![train vs validation loss]({PLOT_FILE})\n" if (Path(output_dir) / PLOT_FILE).exists() else ""

    card = f"""---
library_name: transformers
pipeline_tag: text-generation
license: mit
tags:
- minigpt
- gpt
- causal-lm
- text-generation
- from-scratch{datasets_meta}
---

# {name}

A MiniGPT language model trained from scratch with the Hugging Face Trainer: {arch}.
Corpus: {source}. Tokenizer: {model_args.tokenizer_name or model_args.model_name_or_path or model_args.tokenizer_type}.

## Results

{chr(10).join(results)}
{plot}
## Training hyperparameters

| setting | value |
|---|---|
| preset | {model_args.preset if not model_args.model_name_or_path else model_args.model_name_or_path} |
| block_size | {block_size} |
{hyper}
{sample_text}
## Usage

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

model = AutoModelForCausalLM.from_pretrained("{name}", trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained("{name}")
inputs = tokenizer("The ", return_tensors="pt")
output = model.generate(**inputs, max_new_tokens=100)  # samples with generation_config.json's defaults
print(tokenizer.decode(output[0], skip_special_tokens=True))
```

`trust_remote_code=True` runs `modeling_minigpt.py` and `configuration_minigpt.py` from this folder: read them first.
"""
    path = Path(output_dir) / "README.md"
    path.write_text(card)
    return path
