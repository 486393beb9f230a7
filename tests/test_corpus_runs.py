"""Runs and their data: a run records what its corpus files hold and refuses a changed file; a second run on the same
corpus trains no tokenizer and tokenizes nothing; --streaming trains from a stream; evaluation is bounded."""

import hashlib
import shutil

import datasets
import pytest
from test_integrity import command, one_error_line, snapshot
from test_training import corpus_file, read_json, run_cli

from minigpt import blocks, tokenizer_training
from minigpt.training import DataArguments, prepare_blocks


@pytest.fixture(autouse=True)
def private_datasets_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_datasets"))


def fingerprint(path) -> dict:
    return {"bytes": path.stat().st_size, "blake2b": hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()}


def test_a_corpus_file_changed_in_place_is_refused_never_already_finished_or_resumed(tmp_path, capsys):
    corpus = corpus_file(tmp_path)
    out = tmp_path / "run"
    assert run_cli(*command(corpus, out, max_steps=6)) == 0
    settings = read_json(out / "run_settings.json")
    assert settings["corpus_files"] == {str(corpus.resolve()): fingerprint(corpus)}
    card = (out / "README.md").read_text()
    assert f"Corpus: corpus.txt ({corpus.stat().st_size:,} bytes, blake2b {fingerprint(corpus)['blake2b'][:16]})." in card
    capsys.readouterr()
    assert run_cli(*command(corpus, out, max_steps=6)) == 0
    assert "already finished" in capsys.readouterr().out

    before = snapshot(out)
    size = corpus.stat().st_size
    with corpus.open("a") as file:
        file.write("\n\nUm paragrafo a mais, escrito depois do treino.")
    assert run_cli(*command(corpus, out, max_steps=6)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"other settings (corpus_files {corpus.resolve()} blake2b '" in line
    assert f"bytes {size} -> {corpus.stat().st_size})" in line and "--overwrite_output_dir" in line
    assert snapshot(out) == before

    killed = tmp_path / "killed"  # a run killed after its first checkpoint, then the file changes again
    killed.mkdir()
    shutil.copytree(out / "checkpoint-5", killed / "checkpoint-5")
    assert run_cli(*command(corpus, killed, max_steps=6)) == 2
    assert "checkpoint-5 was trained with other settings (corpus_files" in capsys.readouterr().err


def must_not_run(*args, **kwargs):
    raise AssertionError("work that the cache should have saved")


def test_a_second_run_on_the_same_corpus_trains_no_tokenizer_and_tokenizes_nothing(tmp_path, monkeypatch, caplog):
    from minigpt.monitoring import MiniGPTTrainer

    corpus = corpus_file(tmp_path)
    sample = ("--tokenizer_sample_mb", 0.005)  # half of the 10 kB of training text
    evaluations, evaluate = [], MiniGPTTrainer.evaluate
    with monkeypatch.context() as patch:
        patch.setattr(MiniGPTTrainer, "evaluate", lambda self, *a, **k: evaluations.append(1) or evaluate(self))
        assert run_cli(*command(corpus, tmp_path / "first", *sample, max_steps=2)) == 0
    assert len(evaluations) == 2  # before training (eval_on_start) and at its last step: the final weights once
    results = read_json(tmp_path / "first" / "all_results.json")
    history = read_json(tmp_path / "first" / "checkpoint-2" / "trainer_state.json")["log_history"]
    assert results["eval_loss"] == [entry for entry in history if "eval_loss" in entry][-1]["eval_loss"]
    assert "; the tokenizer trained on its first 0.005 MB." in (tmp_path / "first" / "README.md").read_text()
    monkeypatch.setattr(tokenizer_training, "_train_bpe", must_not_run)
    monkeypatch.setattr(blocks, "_token_rows", must_not_run)
    caplog.set_level("INFO", logger="minigpt")
    assert run_cli(*command(corpus, tmp_path / "second", *sample, max_steps=2)) == 0
    assert "The tokenizer this corpus trained before" in caplog.text
    assert "The blocks this corpus, tokenizer and block size gave before" in caplog.text
    first, second = (read_json(tmp_path / run / "all_results.json") for run in ("first", "second"))
    assert first["eval_loss"] == second["eval_loss"]


def test_streaming_trains_from_a_stream_with_max_steps(tmp_path, capsys):
    corpus = corpus_file(tmp_path, paragraphs=1500)  # 120 kB: two pieces, the first held out
    out = tmp_path / "streamed"
    streaming = ["--streaming", "true", "--tokenizer_sample_mb", "0.02", "--max_eval_samples", 8]
    assert run_cli(*command(corpus, out, *streaming, max_steps=3)) == 0
    assert read_json(out / "trainer_state.json" if (out / "trainer_state.json").exists()
                     else out / "checkpoint-3" / "trainer_state.json")["global_step"] == 3
    assert "; streamed; the tokenizer trained on its first 0.02 MB" in (out / "README.md").read_text()
    capsys.readouterr()
    assert run_cli(*command(corpus, tmp_path / "epochs", *streaming, "--num_train_epochs", 1, max_steps=-1)) == 2
    assert "--streaming needs --max_steps" in one_error_line(capsys.readouterr().err)


def test_evaluation_reads_the_first_max_eval_samples_blocks(tmp_path):
    raw = datasets.DatasetDict(
        train=datasets.Dataset.from_dict({"text": ["uma frase de treino. " * 50]}),
        validation=datasets.Dataset.from_dict({"text": ["a validacao, bem longa. " * 50]}),
    )
    tokenizer = tokenizer_training.train_tokenizer(raw["train"], kind="char")
    everything = prepare_blocks(raw, tokenizer, 8, DataArguments(max_eval_samples=1000))
    bounded = prepare_blocks(raw, tokenizer, 8, DataArguments(max_eval_samples=5))
    assert len(everything["validation"]) == 150 and DataArguments().max_eval_samples == 256
    assert list(bounded["validation"]["input_ids"]) == list(everything["validation"]["input_ids"])[:5]
    assert len(bounded["train"]) == len(everything["train"])


def test_the_scale_benchmark_writes_portuguese_of_the_asked_size_and_reads_the_rates_it_logs(tmp_path, caplog):
    from bench import corpus_scale
    from minigpt.data_progress import ProgressMeter

    size = corpus_scale.write_corpus(tmp_path / "corpus.txt", 1.0)
    text = (tmp_path / "corpus.txt").read_text(encoding="utf-8")
    assert size == len(text.encode("utf-8")) >= 1e6 and text.startswith("CAPITULO 1\n\n") and "Capitú" in text
    first = text.split("CAPITULO 2\n\n")[0].removeprefix("CAPITULO 1\n\n")
    second = text.split("CAPITULO 2\n\n")[1].split("CAPITULO 3")[0]
    assert sorted(first) == sorted(second) and first != second  # the same paragraphs, in another order
    caplog.set_level("INFO", logger="minigpt")
    with ProgressMeter("tokenizing train", 2_000_000, show=False) as meter:
        meter.update(2_000_000)
    assert corpus_scale.rate(caplog.text, "Tokenizing train") > 0
