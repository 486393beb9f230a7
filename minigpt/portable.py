"""What a saved folder needs, beyond save_pretrained, to load in other people's environments: a tokenizer class
that every transformers version knows, and files that anyone can read."""

import json
from pathlib import Path

# transformers 5.x writes its own class name, "TokenizersBackend", which 4.x does not know; every version loads
# "PreTrainedTokenizerFast" (5.x as an alias of the same class).
TOKENIZER_CLASS = "PreTrainedTokenizerFast"
# 4.x's PreTrainedTokenizerFast also returns token_type_ids, which a causal LM's generate() refuses.
MODEL_INPUT_NAMES = ["input_ids", "attention_mask"]


def save_tokenizer(tokenizer, folder) -> None:
    """tokenizer.save_pretrained(folder), with a tokenizer_config.json that transformers 4.57 through 5.x read alike."""
    tokenizer.save_pretrained(folder)
    path = Path(folder) / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config.update(tokenizer_class=TOKENIZER_CLASS, model_input_names=MODEL_INPUT_NAMES)
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


def make_readable(folder) -> None:
    """Every file under `folder` mode 0644, as a published model's are: save_pretrained writes model.safetensors
    0600 (through a private temporary file) and everything else 0644."""
    for path in Path(folder).rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(0o644)
