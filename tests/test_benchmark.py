"""The benchmark's quality measurement: nanoGPT's byte split, and bits over exactly the validation bytes
(minigpt.scoring, the same definition as a finished run's eval_bits_per_byte)."""

import json
import math
from pathlib import Path

import pytest
import torch

from bench import benchmark
from configuration_minigpt import MiniGPTConfig
from minigpt.scoring import blocks_bits_per_byte, text_bits_per_byte
from minigpt.tokenizer_training import train_tokenizer
from modeling_minigpt import MiniGPTForCausalLM


def tiny_model_for(tokenizer, context=16):
    torch.manual_seed(0)
    config = MiniGPTConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           max_position_embeddings=context, eos_token_id=tokenizer.eos_token_id)
    return MiniGPTForCausalLM(config).eval()


def test_nanogpt_split_is_the_last_tenth_of_the_bytes_kept_exactly(tmp_path):
    text = "Première ligne, é à ü.\n\n  Second paragraph\twith tabs.\n\n\n" * 37
    path = tmp_path / "text.txt"
    path.write_text(text)
    train_file, validation_file, validation = benchmark.nanogpt_split(path, tmp_path)
    train = json.loads(Path(train_file).read_text())["text"]
    assert json.loads(Path(validation_file).read_text())["text"] == validation
    assert train + validation == text  # every byte, blank lines included, in order
    assert abs(len(validation.encode()) - len(text.encode()) / 10) <= 2  # the last 10 % (a character at most off)


def test_stream_bits_per_byte_scores_every_validation_token_once():
    import datasets

    text = "the cat sat on the mat; the dog sat on the log. " * 12
    tokenizer = train_tokenizer(datasets.Dataset.from_dict({"text": [text]}), "bpe", 300)
    model = tiny_model_for(tokenizer)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    stream = torch.tensor([tokenizer.eos_token_id, *ids])
    with torch.no_grad():  # the same sum, one window at a time
        windows = [stream[i : i + 17] for i in range(0, len(ids), 16)]
        nats = sum(torch.nn.functional.cross_entropy(model(w[None, :-1]).logits[0], w[1:], reduction="sum").item()
                   for w in windows)
    expected = nats / math.log(2) / len(text.encode())
    assert text_bits_per_byte(model, tokenizer, text, batch_size=3) == pytest.approx(expected, rel=1e-5)


def test_a_runs_bits_per_byte_scores_its_validation_blocks_as_the_benchmark_scores_their_text():
    """eval_bits_per_byte (the validation blocks a run evaluates) and the benchmark's score (a text) are one
    definition: on blocks that hold exactly a text, the same number, over its bytes (é: two)."""
    import datasets

    text = "o gato é pardo; a gata é branca. " * 8  # 264 characters, 280 bytes
    tokenizer = train_tokenizer(datasets.Dataset.from_dict({"text": [text]}), "char")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) % 8 == 0
    blocks = datasets.Dataset.from_dict({"input_ids": [ids[i: i + 8] for i in range(0, len(ids), 8)]})
    model = tiny_model_for(tokenizer, context=8)
    by_blocks = blocks_bits_per_byte(model, blocks, tokenizer, block_size=8, batch_size=5)
    assert by_blocks == pytest.approx(text_bits_per_byte(model, tokenizer, text), rel=1e-6)
    uniform = math.log2(len(tokenizer)) * len(ids) / len(text.encode())  # a model that knows nothing, roughly
    assert 0.5 * uniform < by_blocks < 2 * uniform


def test_stream_bits_per_byte_refuses_a_tokenizer_that_loses_text():
    import datasets

    tokenizer = train_tokenizer(datasets.Dataset.from_dict({"text": ["abc abc"]}), "char")
    model = tiny_model_for(tokenizer)
    with pytest.raises(ValueError, match="round-trip"):
        text_bits_per_byte(model, tokenizer, "abc xyz")  # x, y, z are unknown: <|unk|>
