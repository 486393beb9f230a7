"""The built-in Portuguese corpus through the whole pipeline, byte-exact text, and continued pre-training of GPT-2
weights: real tokenizers, real (tiny) Trainer runs, offline."""

import json
import logging

import datasets
import pytest
import torch
import transformers
from conftest import make_tiny_gpt2_folder
from transformers import AutoTokenizer, GPT2LMHeadModel

import train
from minigpt.loading import load_pretrained

TINY = ["--preset", "tiny", "--config_overrides", "n_embd=64,n_layer=2,n_head=2", "--block_size", "32",
        "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "16", "--logging_steps", "5",
        "--dataloader_num_workers", "0", "--seed", "7"]


def run_cli(*args) -> int:
    return train.main([str(a) for a in args])


def read_json(path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_datasets"))


def test_no_corpus_flag_trains_on_machado_and_writes_portuguese(tmp_path):
    out = tmp_path / "machado"
    assert run_cli("--output_dir", out, "--max_steps", 20, "--eval_steps", 20, "--save_steps", 20,
                   "--validation_split_percentage", 1, "--vocab_size", 300, "--learning_rate", 3e-3, *TINY) == 0
    history = (out / "loss_history.csv").read_text().splitlines()
    evals = [float(line.split(",")[3]) for line in history[1:] if line.split(",")[3]]
    assert evals[-1] < evals[0] - 0.5, evals
    assert "machado (built-in)" in (out / "README.md").read_text()
    samples = (out / "samples.md").read_text(encoding="utf-8")
    assert "Era uma vez" in samples and "Capitú" in samples
    tokenizer = AutoTokenizer.from_pretrained(out)
    text = "Capitú, a mãe, o coração; á janella.\n\n"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_a_model_trained_on_paragraphs_writes_paragraph_breaks(tmp_path):
    sentences = ["o gato dorme.", "a casa e grande.", "era uma vez um rei.", "o mar e azul."]
    corpus = tmp_path / "paragraphs.txt"
    corpus.write_text("\n\n".join(sentences[i % 4] for i in range(400)) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    assert run_cli("--train_file", corpus, "--tokenizer_type", "char", "--output_dir", out, "--max_steps", 60,
                   "--eval_steps", 60, "--save_steps", 60, "--learning_rate", 1e-2, *TINY) == 0
    model, tokenizer = load_pretrained(str(out)).eval(), AutoTokenizer.from_pretrained(out)
    assert tokenizer.convert_tokens_to_ids("\n") != tokenizer.unk_token_id  # newline is a token, not eos
    prompt = tokenizer("o gato dorme.", return_tensors="pt")
    generated = model.generate(**prompt, do_sample=False, max_new_tokens=16)
    assert "\n\n" in tokenizer.decode(generated[0, prompt.input_ids.shape[1]:])


def test_continued_pretraining_of_a_local_gpt2_folder_on_machado(tmp_path):
    gpt2_dir = make_tiny_gpt2_folder(tmp_path / "gpt2")
    out = tmp_path / "continued"
    assert run_cli("--model_name_or_path", gpt2_dir, "--builtin_corpus", "machado", "--output_dir", out,
                   "--max_steps", 20, "--eval_steps", 20, "--save_steps", 20, "--learning_rate", 3e-3,
                   "--validation_split_percentage", 1, "--block_size", 32, "--per_device_train_batch_size", 8,
                   "--dataloader_num_workers", 0) == 0
    config = read_json(out / "config.json")
    assert config["model_type"] == "minigpt" and config["hidden_size"] == 32
    assert config["vocab_size"] == read_json(gpt2_dir / "config.json")["vocab_size"]
    history = (out / "loss_history.csv").read_text().splitlines()
    evals = [float(line.split(",")[3]) for line in history[1:] if line.split(",")[3]]
    assert evals[-1] < evals[0], evals
    assert AutoTokenizer.from_pretrained(out).get_vocab() == AutoTokenizer.from_pretrained(gpt2_dir).get_vocab()
    # The continued model starts from GPT-2's weights: same logits as GPT-2 before any step.
    gpt2 = GPT2LMHeadModel.from_pretrained(gpt2_dir).eval()
    ids = torch.tensor([[5, 17, 42, 7]])
    assert torch.allclose(load_pretrained(str(gpt2_dir)).eval()(ids).logits, gpt2(ids).logits, atol=1e-5)


@pytest.mark.parametrize(("flag", "expected"), [("error", logging.ERROR), ("info", logging.INFO)])
def test_log_level_sets_transformers_and_datasets_verbosity_as_run_clm(tmp_path, flag, expected):
    before = transformers.utils.logging.get_verbosity(), datasets.utils.logging.get_verbosity()
    try:  # a refused pair of sources: the levels are set before any corpus work
        assert run_cli("--log_level", flag, "--builtin_corpus", "machado", "--train_file", tmp_path / "a.txt",
                       "--output_dir", tmp_path / "out") == 2
        assert transformers.utils.logging.get_verbosity() == expected
        assert datasets.utils.logging.get_verbosity() == expected
        assert logging.getLogger("minigpt").level == expected
    finally:
        transformers.utils.logging.set_verbosity(before[0])
        datasets.utils.logging.set_verbosity(before[1])
