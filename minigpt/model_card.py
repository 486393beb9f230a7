"""The README.md model card written into every finished model: Hub metadata (huggingface_hub's ModelCardData),
results, how it was trained, the training data and its rights, the loss plot and a usage example that runs as
written. The GPT-2 export (minigpt.export_gpt2) gets a card of its own that says where it came from."""

import json
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from minigpt.arguments import TRAINING_SETTINGS
from minigpt.corpus import DEFAULT_BUILTIN_CORPUS
from minigpt.monitoring import PLOT_FILE, history_rows, logged_samples
from minigpt.run_folder import INITIAL_DIR, RUN_SETTINGS_FILE

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
## Training data

{{ data }}

## Usage

```python
{{ usage }}
```

{{ usage_note }}
"""

# The transformers versions a saved MiniGPT (and its GPT-2 export) is tested with: tests/test_portability.py loads
# both under each of them.
TESTED_TRANSFORMERS = ("4.57.1", "5.0.0", "5.24.0")
SUPPORTED_RANGE = (f"transformers {TESTED_TRANSFORMERS[0]} through 5.x (tested with "
                   f"{', '.join(TESTED_TRANSFORMERS[:-1])} and {TESTED_TRANSFORMERS[-1]})")
REMOTE_CODE_NOTE = (f"Loads with {SUPPORTED_RANGE}. `trust_remote_code=True` runs `modeling_minigpt.py` and "
                    "`configuration_minigpt.py` from this folder (MiniGPT's code, MIT license): read them first. "
                    "Without remote code: export the folder to GPT-2, "
                    "`python -m minigpt.export_gpt2 RUN_DIR OUT_DIR`.")

# What each built-in corpus allows: the Hub metadata (license, license_name, license_link) and one sentence.
BUILTIN_RIGHTS = {
    "machado": ({"license": "other", "license_name": "public-domain"},
                "Machado de Assis, *Quincas Borba* (1891) and *Dom Casmurro* (1899), as digitised by Project "
                "Gutenberg: in the public domain (the author died in 1908)."),
    "python-reference": ({"license": "other", "license_name": "psf-2.0",
                          "license_link": "https://docs.python.org/3/license.html"},
                         "The Python Language Reference as every CPython ships it (`pydoc_data.topics`), under "
                         "its own license, the Python Software Foundation License (PSF-2.0): "
                         "https://docs.python.org/3/license.html."),
}


def training_data(settings: dict) -> tuple[dict, str]:
    """The Hub license metadata and one sentence on the training data's rights, from a run's settings (the names
    of ModelArguments and DataArguments; run_settings.json holds them)."""
    if settings.get("dataset_name"):
        name = settings["dataset_name"]
        config = f" (configuration `{settings['dataset_config_name']}`)" if settings.get("dataset_config_name") else ""
        rights = ({"license": "unknown"},
                  f"The Hugging Face Hub dataset `{name}`{config}. It carries its own license, which this model's "
                  f"use follows: see its card, https://huggingface.co/datasets/{name}.")
    elif settings.get("train_file"):
        files = [Path(settings[key]).name for key in ("train_file", "validation_file") if settings.get(key)]
        rights = ({"license": "unknown"},
                  f"{' and '.join(f'`{f}`' for f in files)}, text of the person who trained this model. Its "
                  "license is unknown: ask them before you share or use this model.")
    else:
        license_data, sentence = BUILTIN_RIGHTS[settings.get("builtin_corpus") or DEFAULT_BUILTIN_CORPUS]
        rights = (dict(license_data), sentence)
    if settings.get("model_name_or_path"):
        rights = (rights[0], rights[1] + f" It continues the pre-training of {_shown(settings['model_name_or_path'])}"
                                         ", whose own license applies too.")
    return rights


def describe_tokenizer(tokenizer, source: str | None) -> str:
    """The tokenizer the run actually used: its kind, its size, and where it came from when it was not trained here."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    kind = type(backend.model).__name__ if backend is not None else type(tokenizer).__name__
    kind = {"BPE": "byte-level BPE", "WordLevel": "character level"}.get(kind, kind)
    origin = f", from {_shown(source)}" if source else ", trained on the training split"
    return f"{kind}, {len(tokenizer)} tokens{origin}"


def describe_architecture(config, params: int) -> str:
    """config.json's architecture in words (the numbers GPT-2's config holds too)."""
    dropout = (f", dropout {config.hidden_dropout_prob} (attention {config.attention_probs_dropout_prob})"
               if config.hidden_dropout_prob or config.attention_probs_dropout_prob else "")
    return (f"{config.num_hidden_layers} layers, {config.num_attention_heads} heads, {config.hidden_size} wide "
            f"(MLP {config.intermediate_size}, {config.hidden_act}), context {config.max_position_embeddings}, "
            f"vocabulary {config.vocab_size}{dropout}, "
            f"{'tied' if config.tie_word_embeddings else 'separate'} input and output embeddings, "
            f"{params / 1e6:.2f}M parameters")


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


def example_prompt(tokenizer, prompt: str, context: int) -> str:
    """`prompt`, cut to half the context: the card's example must fit the context as written."""
    return tokenizer.decode(tokenizer(prompt).input_ids[: context // 2])


def _usage(name: str, tokenizer, prompt: str, context: int, remote_code: bool = True) -> str:
    max_new_tokens = max(1, min(100, context - len(tokenizer(prompt).input_ids)))
    trust = ", trust_remote_code=True" if remote_code else ""
    return f"""from transformers import AutoModelForCausalLM, AutoTokenizer

model = AutoModelForCausalLM.from_pretrained({name!r}{trust})
tokenizer = AutoTokenizer.from_pretrained({name!r}{trust})
inputs = tokenizer({prompt!r}, return_tensors="pt")
output = model.generate(**inputs, max_new_tokens={max_new_tokens})  # samples with generation_config.json's defaults
print(tokenizer.decode(output[0], skip_special_tokens=True))"""


def hyperparameters(settings: dict, used: dict) -> list[tuple[str, object]]:
    """The card's table: the run's settings as run_settings.json records them (those set, and the length that
    counted: steps or epochs), then what the run made of them (`used`: its block size, precision and scheduler
    arguments, e.g. the decay steps of warmup_stable_decay; the time plan of a --max_minutes run)."""
    started_from = settings["model_name_or_path"]
    rows = [("preset", settings["preset"])] if not started_from else [("started from", _shown(started_from))]
    if settings["config_overrides"] and not started_from:  # what changed the preset
        rows.append(("config_overrides", settings["config_overrides"]))
    rows.append(("block_size", used["block_size"]))
    unused = "num_train_epochs" if (settings["max_steps"] or 0) > 0 else "max_steps"
    rows += [(key, settings[key]) for key in TRAINING_SETTINGS if key != unused and settings[key] is not None]
    rows.append(("precision", used["precision"]))
    plan = used.get("time_plan")
    if plan:  # what the minutes bought
        rows.append(("time plan", f"{plan['planned_steps']} steps ({plan['planned_tokens']:,} tokens): warmup "
                                  f"{plan['warmup_steps']}, decay from step {plan['decay_start_step']}; "
                                  f"{plan['setup_seconds']:g} s of setup, {plan['seconds_per_step']:g} s a step, "
                                  f"re-planned {plan['plans'] - 1} times"))
    if used["lr_scheduler_kwargs"]:
        rows = [row for row in rows if row[0] != "lr_scheduler_kwargs"]
        rows.append(("lr_scheduler_kwargs", json.dumps(used["lr_scheduler_kwargs"])))
    return rows


def write_model_card(folder, *, name, model, tokenizer, settings, used, source, metrics, log_history,
                     prompt) -> Path:
    """Write README.md into `folder` (the finished folder being built) for the model called `name`, trained with
    `settings` (run_settings.json's record)."""
    config = model.config
    params = model.num_parameters()
    prompt = example_prompt(tokenizer, prompt, config.max_position_embeddings)
    started_from = settings["model_name_or_path"]
    tokenizer_source = settings["tokenizer_name"] or started_from
    base_model = _base_model(started_from)
    dataset_name = settings["dataset_name"]
    eval_results = [
        EvalResult(task_type="text-generation", dataset_type=dataset_name or "text", dataset_name=source,
                   metric_type=kind, metric_name=f"validation {kind}", metric_value=round(metrics[key], 4))
        for key, kind in (("eval_loss", "loss"), ("eval_perplexity", "perplexity")) if key in metrics
    ]
    license_data, data = training_data(settings)
    card_data = ModelCardData(
        model_name=name, base_model=base_model, datasets=[dataset_name] if dataset_name else None,
        eval_results=eval_results or None, library_name="transformers", pipeline_tag="text-generation",
        tags=["minigpt", "gpt", "causal-lm", "text-generation",
              "continued-pretraining" if started_from else "from-scratch"],
        widget=[{"text": prompt}], **license_data,
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
    if (Path(folder) / INITIAL_DIR).is_dir():
        results.append(f"\nThe model before training (step 0) is in `{INITIAL_DIR}/`: "
                       f"`from_pretrained(..., subfolder=\"{INITIAL_DIR}\")`.")
    if "eval_bits_per_byte" in metrics:
        results.append(f"\nValidation bits per byte: {metrics['eval_bits_per_byte']:.4f} (every validation token "
                       "predicted once, over the exact bytes they spell).")
    rows = hyperparameters(settings, used)

    arch = describe_architecture(config, params)
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
        sample=sample, data=data, usage=_usage(name, tokenizer, prompt, config.max_position_embeddings),
        usage_note=REMOTE_CODE_NOTE,
    )
    path = Path(folder) / "README.md"
    card.save(path)
    return path


GPT2_TEMPLATE = """---
{{ card_data }}
---

# {{ title }}

{{ description }}

## Training data

{{ data }}

## Usage

```python
{{ usage }}
```

Loads with {{ supported }}, without remote code: a plain `GPT2LMHeadModel`.
"""


def write_gpt2_card(folder, *, name: str, run_dir, tokenizer, config, params: int) -> Path:
    """README.md for a GPT-2 export of the MiniGPT run in `run_dir`: where it came from (the run, its architecture,
    results and training data, as its own folder records them) and how to load it without remote code."""
    run = Path(run_dir)
    original = ModelCard.load(run / "README.md") if (run / "README.md").is_file() else None
    try:
        license_data, data = training_data(json.loads((run / RUN_SETTINGS_FILE).read_text()))
    except (OSError, ValueError):
        license_data, data = {"license": "unknown"}, ("Not recorded: the run folder has no run_settings.json. Its "
                                                      "license is unknown; ask whoever trained it.")
    results = ""
    metrics_file = run / "all_results.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    if "eval_loss" in metrics:
        results = (f" Validation loss {metrics['eval_loss']:.4f} nats/token (perplexity "
                   f"{metrics['eval_perplexity']:.2f}), measured on the MiniGPT: the export computes the same logits.")
    card_data = ModelCardData(
        model_name=name, base_model=original.data.base_model if original else None,
        datasets=original.data.datasets if original else None,
        eval_results=original.data.eval_results if original else None, library_name="transformers",
        pipeline_tag="text-generation", tags=["gpt2", "minigpt", "text-generation"], **license_data,
    )
    widget = original.data.widget if original else None  # the original card's example prompt
    prompt = widget[0]["text"] if widget else example_prompt(tokenizer, "The", config.max_position_embeddings)
    card = ModelCard.from_template(
        card_data, template_str=GPT2_TEMPLATE, title=name,
        description=f"The MiniGPT model `{run.name}` as a plain GPT-2 (`GPT2LMHeadModel`), written by "
                    f"`python -m minigpt.export_gpt2`: the same weights, the same logits, and no remote code. "
                    f"{describe_architecture(config, params)}.{results}",
        data=data, usage=_usage(name, tokenizer, prompt, config.max_position_embeddings, remote_code=False),
        supported=SUPPORTED_RANGE,
    )
    path = Path(folder) / "README.md"
    card.save(path)
    return path
