"""Where models come from: a saved MiniGPT or GPT-2 folder (or Hub name), or a fresh untrained MiniGPT; and how
many weights a model of a config has, without building it in memory.

Weights load from safetensors only (`use_safetensors=True`): a pickle file in someone's folder is never unpickled.
"""

from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig

from configuration_minigpt import MiniGPTConfig
from minigpt.errors import SetupError
from modeling_minigpt import MiniGPTForCausalLM


def load_pretrained(name_or_path: str, attn_implementation: str | None = None) -> MiniGPTForCausalLM:
    """A saved MiniGPT, or GPT-2 weights (local directory or Hub name) converted with from_gpt2."""
    looks_local = name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1  # Hub: "org/name"
    if looks_local and not Path(name_or_path).expanduser().is_dir():
        raise SetupError(f"--model_name_or_path {name_or_path!r}: no such directory; pass a saved model's folder")
    try:
        model_type = AutoConfig.from_pretrained(name_or_path).model_type
    except (OSError, ValueError) as error:
        raise SetupError(
            f"--model_name_or_path {name_or_path!r}: no model there ({str(error).splitlines()[0]}); pass a saved "
            "MiniGPT directory, a GPT-2 directory, or a Hub name when online"
        ) from None
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    try:  # weights from safetensors only: a pickle file in someone's folder is never unpickled
        if model_type == "minigpt":
            return MiniGPTForCausalLM.from_pretrained(name_or_path, use_safetensors=True, **kwargs)
        if model_type == "gpt2":
            return MiniGPTForCausalLM.from_gpt2(name_or_path, use_safetensors=True)
    except OSError as error:
        raise SetupError(f"--model_name_or_path {name_or_path!r}: {str(error).splitlines()[0]}") from None
    raise SetupError(f"--model_name_or_path {name_or_path!r} is a {model_type!r} model; MiniGPT loads minigpt or gpt2")


def untrained_model(preset: str, tokenizer, seed: int = 0) -> MiniGPTForCausalLM:
    """A random MiniGPT of `preset` sized for `tokenizer`: the chapter's model before training. Its initial weights
    come from `seed`, without touching the global RNG."""
    config = MiniGPTConfig.from_preset(
        preset, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MiniGPTForCausalLM(config)
    return model.eval()


def count_parameters(config: PretrainedConfig | dict, exclude_embeddings: bool = False) -> int:
    """The weights of a model of `config` (a MiniGPT's or a GPT-2's; a config.json's dict too), counted by
    transformers' num_parameters on the model built on torch's meta device: no memory, a few milliseconds. (Not
    accelerate's init_empty_weights: without include_buffers it leaves tied embeddings untied, counted twice.)"""
    if isinstance(config, dict):
        config = AutoConfig.for_model(**config)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return model.num_parameters(exclude_embeddings=exclude_embeddings)
