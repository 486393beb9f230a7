"""The pre-training pipeline end to end: real corpora, real tokenizers, real (tiny) Trainer runs."""

import json
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

import train
from minigpt.monitoring import OverfittingCallback
from minigpt.hub import shared_files
from minigpt.run_folder import INITIAL_DIR, checkpoint_is_complete, find_resumable_checkpoint
from minigpt.training import DataArguments, MiniGPTTrainingArguments, ModelArguments, run_training
from modeling_minigpt import MiniGPTForCausalLM

ROOT = Path(__file__).resolve().parents[1]
SHAKESPEARE = ROOT / "minigpt" / "data" / "tinyshakespeare.txt"
TINY = ["--preset", "tiny", "--config_overrides", "n_embd=64,n_layer=2,n_head=2", "--block_size", "32",
        "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "16", "--logging_steps", "5",
        "--dataloader_num_workers", "0", "--seed", "7"]


def corpus_file(tmp_path, name="corpus.txt", paragraphs=120) -> Path:
    words = "the model reads a text and learns to predict the next token of the text".split()
    lines = [" ".join(words[(i * 7 + j) % len(words)] for j in range(12)) + "." for i in range(paragraphs)]
    path = tmp_path / name
    path.write_text("\n\n".join(lines))
    return path


def run_cli(*args) -> int:
    try:
        return train.main([str(a) for a in args])
    except SystemExit as exit:  # argparse's own errors (unknown flag, invalid choice)
        return exit.code


def train_in_a_fork(*args) -> int:
    """train.main(args) in a child forked from this process, its output dropped; returns the child's PID: a real
    process to kill -9, without the seconds a cold start spends importing the Trainer. The child uses one torch
    thread (OpenMP's thread pool does not survive a fork; DataLoader's workers do the same)."""
    child = os.fork()
    if child == 0:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            sys.stdout = sys.stderr = os.fdopen(devnull, "w")  # pytest's capture writes to its own files
            torch.set_num_threads(1)
            run_cli(*args)
        finally:
            os._exit(0)
    return child


def is_running(pid: int) -> bool:
    """Whether the child `pid` has not ended (it is not reaped: os.waitpid still reads its end)."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_end_to_end_on_a_written_corpus_loss_falls_and_the_folder_is_whole(tmp_path):
    """No optimisation flag: the defaults (learning rate, warmup-stable-decay, clipping, an evaluation before
    training) take the loss well down. That such a folder loads and generates in a fresh process that cannot import
    the project (trust_remote_code) is tests/test_portability.py's test_the_run_and_its_gpt2_export_load_under."""
    out = tmp_path / "run"
    assert run_cli("--train_file", corpus_file(tmp_path), "--output_dir", out, "--max_steps", 40,
                   "--eval_steps", 20, "--save_steps", 20, "--vocab_size", 300, *TINY) == 0
    for name in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
                 "configuration_minigpt.py", "modeling_minigpt.py", "loss_history.csv", "loss_plot.png",
                 "all_results.json", "eval_results.json", "train_results.json", "README.md", "samples.md"):
        assert (out / name).is_file(), name
    assert not list(out.glob("*.bin")) and not list(out.glob("*.pt"))

    history = (out / "loss_history.csv").read_text().splitlines()
    assert history[0] == "step,tokens_seen,train_loss,eval_loss,eval_perplexity"
    evals = [float(line.split(",")[3]) for line in history[1:] if line.split(",")[3]]
    assert len(evals) >= 3 and evals[-1] < evals[0] - 2.0, evals  # step 0 (before) vs after

    results = read_json(out / "all_results.json")
    assert results["eval_perplexity"] == pytest.approx(2.718281828 ** results["eval_loss"], rel=1e-6)
    generation = read_json(out / "generation_config.json")
    assert generation["do_sample"] is True and 0 < generation["temperature"] < 1.5

    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: transformers" in card and "pipeline_tag: text-generation" in card
    assert "license:" in card and "tags:" in card and "loss_plot.png" in card
    assert "trust_remote_code=True" in card and "| learning_rate | 0.001 |" in card
    assert "before training (step 0)" in card


class _FirstWeights(TrainerCallback):
    """The model's weights as the Trainer starts training."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.weights = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def test_step_0_holds_the_weights_training_started_from(tmp_path):
    out, first = tmp_path / "run", _FirstWeights()
    run_training(ModelArguments(preset="tiny", config_overrides="n_embd=32,n_layer=1,n_head=2", vocab_size=300),
                 DataArguments(train_file=str(corpus_file(tmp_path)), block_size=32),
                 MiniGPTTrainingArguments(output_dir=str(out), max_steps=4, eval_steps=4, report_to="none",
                                          per_device_train_batch_size=4, disable_tqdm=True, seed=3),
                 callbacks=[first])
    initial = MiniGPTForCausalLM.from_pretrained(out, subfolder=INITIAL_DIR, use_safetensors=True)
    trained = MiniGPTForCausalLM.from_pretrained(out, use_safetensors=True)
    saved = initial.state_dict()
    assert all(torch.equal(saved[name], first.weights[name]) for name in first.weights)
    assert not torch.equal(trained.state_dict()["lm_head.weight"], saved["lm_head.weight"])
    assert (out / INITIAL_DIR / "tokenizer.json").read_text() == (out / "tokenizer.json").read_text()
    assert f"`{INITIAL_DIR}/`" in (out / "README.md").read_text()
    shared = {path.relative_to(out).as_posix() for path in shared_files(out)}  # a push, a download
    assert f"{INITIAL_DIR}/model.safetensors" in shared and f"{INITIAL_DIR}/tokenizer.json" in shared


def test_tiny_shakespeare_char_level(tmp_path):
    text = tmp_path / "shakespeare.txt"  # its first 100 kB: 60 steps of 8 x 32 characters read 15 kB of them
    text.write_bytes(SHAKESPEARE.read_bytes()[:100_000])
    out = tmp_path / "shakespeare"
    assert run_cli("--train_file", text, "--tokenizer_type", "char", "--validation_split_percentage", 2,
                   "--output_dir", out, "--max_steps", 60, "--eval_steps", 30, "--save_steps", 60,
                   "--learning_rate", 3e-3, *TINY) == 0
    results = read_json(out / "all_results.json")
    config = read_json(out / "config.json")
    assert config["vocab_size"] < 100  # characters, not BPE pieces
    assert results["eval_loss"] < 3.3  # uniform over ~65 characters is 4.2 nats
    assert 0 < results["eval_bits_per_byte"] < 5


def test_builtin_corpus_offline_with_no_corpus_flag(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    out = tmp_path / "builtin"
    assert run_cli("--builtin_corpus", "python-reference", "--output_dir", out, "--max_steps", 10,
                   "--eval_steps", 10, "--save_steps", 10, "--vocab_size", 512, "--max_train_samples", 60, *TINY) == 0
    assert "python-reference (built-in)" in (out / "README.md").read_text()
    assert "The" in (out / "samples.md").read_text()


def test_eval_only_reports_loss_and_perplexity_of_a_saved_model(finished_run, tmp_path, capsys):
    _, model_dir, _ = finished_run
    other = corpus_file(tmp_path, "other.txt", paragraphs=60)
    eval_dir = tmp_path / "eval"
    capsys.readouterr()
    assert run_cli("--do_train", "false", "--model_name_or_path", model_dir, "--train_file", other,
                   "--output_dir", eval_dir, "--block_size", 32) == 0
    printed = capsys.readouterr().out
    results = read_json(eval_dir / "eval_only_results.json")
    assert "eval_loss" in results and "eval_perplexity" in results and results["model"] == str(model_dir)
    assert f"eval_perplexity={results['eval_perplexity']:.4g}" in printed
    assert not (eval_dir / "model.safetensors").exists()


BAD_INPUTS = [
    ("empty.txt", "   \n\n  ", [], "empty"),
    ("short.txt", "too short\n\nfor one block", ["--block_size", "64"], "block"),
    ("latin1.txt", "caf\xe9 ol\xe9 " * 200, [], "UTF-8"),
    ("data.csv", "title,body\nfoo,bar\n", [], "--text_column"),
    ("ok.txt", None, ["--preset", "huge"], "huge"),
    ("ok.txt", None, ["--config_overrides", "n_layer"], "key=value"),
    ("ok.txt", None, ["--config_overrides", "hidden_size=100,num_attention_heads=3"], "divisible"),
    ("ok.txt", None, ["--config_overrides", "colour=3"], "unknown field"),
    ("ok.txt", None, ["--model_name_or_path", "/nonexistent/model"], "--model_name_or_path"),
    ("ok.txt", None, ["--push_to_hub", "--hub_model_id", "someone/minigpt"], "push"),
    ("ok.txt", None, ["--push_as_gpt2"], "pass --push_to_hub too"),
    ("ok.txt", None, ["--push_to_hub", "--push_as_gpt2", "--config_overrides", "mlp_bias=false"],
     "--push_as_gpt2: MiniGPTConfig: mlp_bias=False has no GPT-2 form"),
]


@pytest.mark.parametrize("name, content, extra, message", BAD_INPUTS, ids=[b[0] + b[3] for b in BAD_INPUTS])
def test_bad_input_gives_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch, name, content, extra, message):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # no cached login either
    path = tmp_path / name
    if content is None:
        path = corpus_file(tmp_path, name)
    elif name == "latin1.txt":
        path.write_bytes(content.encode("latin-1"))
    else:
        path.write_text(content)
    out = tmp_path / "out"
    args = ["--train_file", path, "--output_dir", out, "--max_steps", 5, *TINY, *extra]
    assert run_cli(*args) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error: " in line]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in err, err[-2000:]
    assert not out.exists()


def test_empty_validation_split_is_reported(tmp_path, capsys):
    validation = tmp_path / "validation.txt"
    validation.write_text("tiny")
    assert run_cli("--train_file", corpus_file(tmp_path), "--validation_file", validation,
                   "--output_dir", tmp_path / "out", *TINY) == 2
    assert "validation" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _train_command(corpus, out, max_steps=20):
    return ["--train_file", corpus, "--output_dir", out, "--max_steps", max_steps, "--eval_steps", 10,
            "--save_steps", 5, "--save_total_limit", 2, "--vocab_size", 300, "--eval_on_start", "false", *TINY]


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path, caplog):
    """One process, killed -9 after its checkpoint at step 10; the uninterrupted reference trains here
    meanwhile, and the same command run here resumes the killed one."""
    corpus = corpus_file(tmp_path)
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    child = train_in_a_fork(*_train_command(corpus, killed))

    def kill_after_step_10():
        deadline = time.time() + 300
        while (time.time() < deadline and is_running(child)
               and not (killed / "checkpoint-10" / "trainer_state.json").exists()):
            time.sleep(0.05)
        os.kill(child, signal.SIGKILL)  # a real kill -9 mid-run, somewhere after step 10

    killer = threading.Thread(target=kill_after_step_10)
    killer.start()
    try:
        assert run_cli(*_train_command(corpus, reference)) == 0
    finally:
        killer.join()
        os.waitpid(child, 0)
    assert not (killed / "model.safetensors").exists(), "the run was meant to die before the end"

    caplog.set_level("INFO", logger="minigpt")
    assert run_cli(*_train_command(corpus, killed)) == 0
    assert "Resuming from" in caplog.text
    final, expected = read_json(killed / "all_results.json"), read_json(reference / "all_results.json")
    assert final["eval_loss"] == pytest.approx(expected["eval_loss"], abs=2e-3)
    state = read_json(sorted(killed.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[-1]
                      / "trainer_state.json")
    assert state["global_step"] == 20
    assert len(list(killed.glob("checkpoint-*"))) <= 2  # save_total_limit
    # the resumed run never held its initial weights in memory: it saves the same step-0 as the uninterrupted run
    initial, reference_initial = (load_file(run / INITIAL_DIR / "model.safetensors") for run in (killed, reference))
    assert initial.keys() == reference_initial.keys()
    assert all(torch.equal(initial[name], reference_initial[name]) for name in initial)


def test_half_written_checkpoint_is_never_picked(tmp_path):
    good = tmp_path / "checkpoint-10"
    good.mkdir()
    (good / "model.safetensors").write_bytes(b"x")
    (good / "trainer_state.json").write_text('{"global_step": 10}')
    torn = tmp_path / "checkpoint-20"
    torn.mkdir()
    (torn / "model.safetensors").write_bytes(b"x")
    (torn / "trainer_state.json").write_text('{"global_st')  # killed while writing
    assert checkpoint_is_complete(good) and not checkpoint_is_complete(torn)
    assert find_resumable_checkpoint(str(tmp_path)) == str(good)
    assert not torn.exists()


def test_a_checkpoint_of_two_processes_needs_both_random_states(tmp_path):
    """Each process writes its own random state into a checkpoint; the main process its state file, maybe before
    the other process is done: the checkpoint is whole only with every process's file."""
    checkpoint = tmp_path / "checkpoint-10"
    checkpoint.mkdir()
    (checkpoint / "model.safetensors").write_bytes(b"x")
    settings = {"settings": {"world_size": 2}}
    (checkpoint / "trainer_state.json").write_text(json.dumps(
        {"global_step": 10, "stateful_callbacks": {"RunSettingsCallback": {"args": settings, "attributes": {}}}}))
    (checkpoint / "rng_state_0.pth").write_bytes(b"x")
    assert not checkpoint_is_complete(checkpoint)
    (checkpoint / "rng_state_1.pth").write_bytes(b"x")
    assert checkpoint_is_complete(checkpoint)


def test_early_stopping_keeps_the_best_model(tmp_path):
    # Random letters: the model can only learn their frequencies, then memorises the training text, so
    # validation loss bottoms out early and rises again: overfitting in a few seconds.
    rng = random.Random(0)
    for split in ("train", "validation"):
        paragraphs = ("".join(rng.choice("abcdefgh") for _ in range(60)) for _ in range(12))
        (tmp_path / f"{split}.txt").write_text("\n\n".join(paragraphs))
    out = tmp_path / "early"
    assert run_cli("--train_file", tmp_path / "train.txt", "--validation_file", tmp_path / "validation.txt",
                   "--tokenizer_type", "char", "--output_dir", out, "--max_steps", 300, "--eval_steps", 10,
                   "--learning_rate", 3e-3, "--warmup_steps", 0, "--lr_scheduler_type", "constant",
                   "--early_stopping_patience", 3, *TINY) == 0
    state = read_json(sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[-1]
                      / "trainer_state.json")
    assert state["global_step"] < 300, "early stopping should have ended the run"
    evals = [e["eval_loss"] for e in state["log_history"] if "eval_loss" in e]
    assert min(evals) < evals[-1]
    assert read_json(out / "all_results.json")["eval_loss"] == pytest.approx(min(evals[1:]), abs=1e-4)


class _State:
    def __init__(self, log_history):
        self.log_history = log_history
        self.global_step = log_history[-1]["step"]


def test_overfitting_is_reported_when_validation_rises_and_training_falls(caplog):
    callback = OverfittingCallback(patience=3)
    history = []
    for step, (train_loss, val_loss) in enumerate([(5, 5.0), (4, 4.5), (3, 4.6), (2, 4.7), (1, 4.8)], start=1):
        history += [{"step": step * 10, "loss": train_loss}, {"step": step * 10, "eval_loss": val_loss}]
        callback.on_evaluate(None, _State(history), None)
    assert callback.warned_at == 50
    assert "overfitting" in caplog.text

    healthy = OverfittingCallback(patience=3)
    history = []
    for step, val in enumerate([5.0, 4.5, 4.4, 4.3, 4.2], start=1):
        history += [{"step": step, "loss": 6 - step}, {"step": step, "eval_loss": val}]
        healthy.on_evaluate(None, _State(history), None)
    assert healthy.warned_at is None


def test_a_pickle_only_model_folder_is_refused(tmp_path, capsys):
    import torch
    from conftest import make_tiny_model

    folder = tmp_path / "pickled"
    model = make_tiny_model()
    model.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    assert run_cli("--model_name_or_path", folder, "--train_file", corpus_file(tmp_path), "--output_dir",
                   tmp_path / "out", "--block_size", 32) == 2
    assert "error: --model_name_or_path" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
