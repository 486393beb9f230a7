"""The output folder never lies: runs are resumed only by their own command, eval-only keeps a run's records, the
final save is atomic under kill -9, one process per folder, bad settings fail before any work, generation never
fails part-way, the model card is true (its example runs: test_portability.py), --push_to_hub pushes once."""

import hashlib
import logging
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from conftest import make_tiny_model
from huggingface_hub import ModelCard
from huggingface_hub.utils import filter_repo_objects
from transformers import GenerationConfig
from test_portability import card_example
from test_training import TINY, corpus_file, is_running, read_json, run_cli, train_in_a_fork

import minigpt.training
from minigpt.hub import NOT_SHARED, push_gpt2
from minigpt.loading import load_pretrained
from minigpt.run_folder import OutputDirLock, staging_dir, swap_in
from minigpt.training import sampling_generation_config

STEP_TOKENS = 8 * 32  # TINY: batch 8 x block 32


def command(corpus, out, *extra, max_steps=10):
    return ["--train_file", corpus, "--output_dir", out, "--max_steps", max_steps, "--eval_steps", 5,
            "--save_steps", 5, "--vocab_size", 300, *TINY, *extra]


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_error_line(err: str) -> str:
    errors = [line for line in err.splitlines() if "error: " in line]
    assert len(errors) == 1 and "Traceback" not in err, err[-2000:]
    return errors[0]


@pytest.fixture
def finished(finished_run):
    """A finished 10-step run (checkpoints at 5 and 10), trained from scratch: (corpus, folder). Copy it first."""
    corpus, run, _ = finished_run
    return corpus, run


def copy_of(finished_run, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    return out


def test_rerun_of_a_finished_run_adds_no_step_and_other_settings_are_refused(finished, tmp_path, capsys):
    corpus, source = finished
    out = copy_of(source, tmp_path)
    before = snapshot(out)
    capsys.readouterr()
    assert run_cli(*command(corpus, out)) == 0
    assert "already finished" in capsys.readouterr().out
    assert snapshot(out) == before  # no checkpoint-11, nothing rewritten

    assert run_cli(*command(corpus, out, max_steps=12)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "finished run with other settings (max_steps 10 -> 12)" in line and "--overwrite_output_dir" in line
    assert snapshot(out) == before


def test_a_leftover_checkpoint_is_resumed_only_by_its_own_command(finished, tmp_path, capsys, caplog):
    corpus, source = finished
    out = tmp_path / "killed"
    out.mkdir()
    shutil.copytree(source / "checkpoint-5", out / "checkpoint-5")  # what a run killed after step 5 leaves
    before = snapshot(out)
    for extra in (["--model_name_or_path", source],  # the README's "continue pre-training" command
                  ["--config_overrides", "n_embd=64,n_layer=3,n_head=2"], ["--tokenizer_type", "char"]):
        assert run_cli(*command(corpus, out, *extra)) == 2
        line = one_error_line(capsys.readouterr().err)
        assert "checkpoint-5 was trained with other settings" in line and "--overwrite_output_dir" in line, line
        assert snapshot(out) == before

    caplog.set_level("INFO", logger="minigpt")
    transformers_log = logging.getLogger("transformers")  # its own handler; not propagated to pytest's
    transformers_log.addHandler(caplog.handler)
    try:
        assert run_cli(*command(corpus, out)) == 0  # the same command resumes it
    finally:
        transformers_log.removeHandler(caplog.handler)
    assert "Resuming from" in caplog.text
    assert "missing keys" not in caplog.text  # the tied head is re-tied, not reported missing
    assert read_json(out / "checkpoint-10" / "trainer_state.json")["global_step"] == 10
    samples = (out / "samples.md").read_text()
    assert "## step 0 " in samples and "## step 10 " in samples  # the samples from before the resume are kept

    assert run_cli(*command(corpus, out, "--overwrite_output_dir", max_steps=6)) == 0  # fresh, other settings
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-5", "checkpoint-6"]
    steps = [e["step"] for e in read_json(out / "checkpoint-6" / "trainer_state.json")["log_history"]]
    assert max(steps) == 6 and read_json(out / "run_settings.json")["max_steps"] == 6
    assert read_json(out / "all_results.json")["train_tokens"] == 6 * STEP_TOKENS


def test_eval_only_keeps_the_training_records(finished, tmp_path, capsys):
    _, source = finished
    out = copy_of(source, tmp_path)
    before = snapshot(out)
    other = corpus_file(tmp_path, "other.txt", paragraphs=40)
    assert run_cli("--do_train", "false", "--model_name_or_path", out, "--train_file", other, "--output_dir", out,
                   "--block_size", 32) == 0
    after = snapshot(out)
    assert set(after) - set(before) == {"eval_only_results.json"}
    assert {k: v for k, v in after.items() if k in before} == before  # history, plot, samples, results untouched
    results = read_json(out / "eval_only_results.json")
    size, digest = other.stat().st_size, hashlib.blake2b(other.read_bytes(), digest_size=16).hexdigest()
    assert results["corpus"] == f"other.txt ({size:,} bytes, blake2b {digest[:16]})" and results["eval_loss"] > 0


def test_card_config_and_generation_config_are_true(finished):
    """The card's example, run as written in a process that cannot import the project: test_portability.py's
    test_the_card_example_runs_as_written_from_the_folder_that_holds_the_run."""
    _, out = finished
    card = ModelCard.load(out / "README.md")
    data = card.data
    assert "from-scratch" in data.tags and data.base_model is None
    assert [(r.metric_type, r.metric_value) for r in data.eval_results] == [
        ("loss", round(read_json(out / "all_results.json")["eval_loss"], 4)),
        ("perplexity", round(read_json(out / "all_results.json")["eval_perplexity"], 4))]
    assert "| lr_scheduler_type | warmup_stable_decay |" in card.text and "| max_steps | 10 |" in card.text
    assert '| lr_scheduler_kwargs | {"num_decay_steps": 3} |' in card.text  # the last 30 % of 10 steps
    assert "num_train_epochs" not in card.text and "Tokenizer: byte-level BPE, " in card.text
    config, generation = read_json(out / "config.json"), read_json(out / "generation_config.json")
    assert config["use_cache"] is True
    assert generation["max_new_tokens"] <= config["max_position_embeddings"] // 2

    assert "from_pretrained('run'" in card_example(out)  # the folder's own name


class HubRecorder:
    """Stands in for huggingface_hub.HfApi: records what would be pushed, and with which token."""

    calls: ClassVar[list] = []

    def __init__(self, token=None, **kwargs):
        self.token = token

    def whoami(self, token=None):
        return {"name": "tester"}

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, self.token or kwargs.get("token")))
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def upload_folder(self, *, folder_path, repo_id, ignore_patterns=None, allow_patterns=None, **kwargs):
        files = [str(p.relative_to(folder_path)) for p in Path(folder_path).rglob("*") if p.is_file()]
        kept = sorted(filter_repo_objects(files, allow_patterns=allow_patterns, ignore_patterns=ignore_patterns))
        self.calls.append(("upload_folder", repo_id, self.token or kwargs.get("token"), kept))

    def __getattr__(self, name):  # anything else the Trainer might try (upload_file, create_commit...)
        def record(*args, **kwargs):
            self.calls.append((name, args, kwargs))
        return record


def test_push_to_hub_pushes_the_finished_folder_once_without_pickles(finished, tmp_path, monkeypatch):
    import transformers.utils.hub

    corpus, source = finished
    monkeypatch.setattr("huggingface_hub.HfApi", HubRecorder)  # what minigpt.hub pushes with
    monkeypatch.setattr(transformers.utils.hub, "HfApi", HubRecorder)  # what the Trainer would push with
    monkeypatch.setattr(transformers.utils.hub, "_hf_api", None, raising=False)
    monkeypatch.setenv("HF_TOKEN", "hf_recorded_token")
    HubRecorder.calls = []
    out = tmp_path / "continued"
    assert run_cli(*command(corpus, out, "--model_name_or_path", source, "--push_to_hub",
                            "--hub_model_id", "tester/continued", max_steps=4)) == 0

    kinds = [call[0] for call in HubRecorder.calls]
    assert kinds == ["create_repo", "upload_folder"], HubRecorder.calls  # one repo, one commit, at the end
    _, repo_id, token, files = HubRecorder.calls[1]
    assert repo_id == "tester/continued" and token == "hf_recorded_token"
    expected = [name for name in snapshot(out) if not name.startswith("checkpoint-")]
    assert files == sorted(expected) and "model.safetensors" in files and "README.md" in files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pkl"))] and not list(out.glob("*.bin"))
    assert list(filter_repo_objects(["training_args.bin"], ignore_patterns=NOT_SHARED)) == []

    # The card of a continued run: no from-scratch tag, no local path, the usage example names the Hub repo
    card = ModelCard.load(out / "README.md")
    assert "from-scratch" not in card.data.tags and "continued-pretraining" in card.data.tags
    assert "trained from scratch" not in card.text and "| preset |" not in card.text
    assert str(tmp_path) not in card.content and "the local folder `run`" in card.text
    assert "from_pretrained('tester/continued'" in card.text


def test_push_as_gpt2_pushes_the_export_and_leaves_no_copy(finished, tmp_path, monkeypatch):
    _, source = finished
    out = copy_of(source, tmp_path)
    monkeypatch.setattr("huggingface_hub.HfApi", HubRecorder)
    HubRecorder.calls = []
    assert push_gpt2(str(out), "tester/minigpt-gpt2", token="hf_recorded_token").endswith("tester/minigpt-gpt2")
    (_, repo, _), (_, _, token, files) = HubRecorder.calls
    assert repo == "tester/minigpt-gpt2" and token == "hf_recorded_token"
    assert files == ["README.md", "config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                     "tokenizer_config.json"]  # GPT-2's files: no remote code
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # the export beside it is gone


def forked(work) -> int:
    """Run work() in a child forked from this process (no cold start; it must touch no torch, only files);
    returns the child's PID."""
    child = os.fork()
    if child == 0:
        try:
            work()
        finally:
            os._exit(0)
    return child


def test_a_second_run_on_the_same_folder_exits_2_and_a_dead_runs_lock_is_taken_over(tmp_path, capsys):
    """The lock as a run holds it while it trains (tests/test_distributed.py refuses a second train.py beside a
    real one); killed -9, its lock file is left behind and taken over."""
    corpus = corpus_file(tmp_path)
    out = tmp_path / "busy"

    def hold_the_folder():
        with OutputDirLock(out):
            time.sleep(300)

    first = forked(hold_the_folder)
    lock = tmp_path / ".busy.lock"
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (lock.exists() and lock.read_text().strip()):
            time.sleep(0.01)
        assert run_cli(*command(corpus, out, max_steps=4)) == 2
        assert f"in use by PID {first}" in one_error_line(capsys.readouterr().err)
    finally:
        os.kill(first, signal.SIGKILL)
        os.waitpid(first, 0)
    assert lock.read_text().strip() == str(first)  # left behind by the killed run
    with OutputDirLock(out):
        assert lock.read_text().strip() == str(os.getpid())
    assert not lock.exists()


def _consistent(out: Path) -> int:
    """The folder is one finished run: its records, card and weights agree. Returns its max_steps."""
    settings = read_json(out / "run_settings.json")
    results = read_json(out / "all_results.json")
    history = (out / "loss_history.csv").read_text().splitlines()
    assert history[-1].startswith(f"{settings['max_steps']},{results['train_tokens']},")
    assert 0 < results["train_tokens"] <= settings["max_steps"] * STEP_TOKENS  # what the batches held
    assert read_json(out / "train_results.json")["train_tokens"] == results["train_tokens"]
    assert f"| max_steps | {settings['max_steps']} |" in (out / "README.md").read_text()
    model = load_pretrained(str(out))
    assert model.config.use_cache is True
    return settings["max_steps"]


def test_kill_9_during_the_final_save_leaves_the_old_or_the_new_folder(finished, tmp_path, capsys):
    corpus, source = finished
    out = copy_of(source, tmp_path)
    args = command(corpus, out, "--overwrite_output_dir", max_steps=6)
    staging = tmp_path / ".run.saving"
    child = train_in_a_fork(*args)
    deadline = time.time() + 300
    while time.time() < deadline and not staging.exists() and is_running(child):
        time.sleep(0.002)
    time.sleep(random.Random(os.getpid()).choice([0, 0.05, 0.2, 0.5]))
    os.kill(child, signal.SIGKILL)  # somewhere in the final save: building the folder or swapping it in
    os.waitpid(child, 0)
    assert _consistent(out) in (10, 6)

    assert run_cli(*args) == 0, capsys.readouterr().err[-2000:]  # the same command finishes
    assert _consistent(out) == 6 and not staging.exists()


def test_kill_9_anywhere_in_the_swap_leaves_a_whole_loadable_folder(tmp_path):
    out = tmp_path / "model"
    make_tiny_model(seed=1).save_pretrained(out)
    for i in range(300):
        (out / f"record-{i}.txt").write_text("1")
    for step in (5, 10):
        (out / f"checkpoint-{step}").mkdir()
    saves = {seed: tmp_path / f"saved-{seed}" for seed in range(2, 14)}
    for seed, saved in saves.items():  # the model's own files, written here: the child only copies files
        make_tiny_model(seed=seed).save_pretrained(saved)

    def save(seed):
        staging = staging_dir(out)
        shutil.copytree(saves[seed], staging, dirs_exist_ok=True)
        for i in range(300):  # a big folder: the kill lands while it is built, swapped in, or its checkpoints move
            (staging / f"record-{i}.txt").write_text(str(seed))
        swap_in(staging, out)

    start = time.time()
    os.waitpid(forked(lambda: save(2)), 0)
    whole = time.time() - start  # a save not killed; then kills from its start to its end, most near the swap
    for seed, fraction in zip(range(3, 14), [0, 0.3, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0, 1.1]):
        child = forked(lambda seed=seed: save(seed))
        time.sleep(whole * fraction)
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        records = {(out / f"record-{i}.txt").read_text() for i in range(300)}
        assert len(records) == 1, f"a mixed folder after a kill at {fraction:.0%} of a save"  # all old or all new
        model = load_pretrained(str(out))
        expected = make_tiny_model(seed=int(records.pop()))
        assert torch.equal(model.lm_head.weight, expected.lm_head.weight)  # weights from the same save
    with OutputDirLock(out):  # what the next run does first
        assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-10", "checkpoint-5"]


@pytest.mark.parametrize("killed_after", ["the exchange", "the fallback's first rename"])
def test_checkpoints_a_killed_swap_left_behind_come_back(tmp_path, killed_after):
    """The on-disk state a kill -9 leaves inside swap_in: the checkpoints are still in the previous folder."""
    out = tmp_path / "model"
    previous = tmp_path / (".model.saving" if killed_after == "the exchange" else ".model.saving.old")
    make_tiny_model(seed=1).save_pretrained(previous)
    for step in (5, 10):
        (previous / f"checkpoint-{step}").mkdir()
        (previous / f"checkpoint-{step}" / "trainer_state.json").write_text(str(step))
    if killed_after == "the exchange":
        make_tiny_model(seed=2).save_pretrained(out)  # the new folder is in place
        (out / "checkpoint-10").mkdir()  # already moved before the kill
        (out / "checkpoint-10" / "trainer_state.json").write_text("10")
    with OutputDirLock(out):  # the next run, before it looks for a checkpoint to resume
        assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-10", "checkpoint-5"]
        assert (out / "checkpoint-5" / "trainer_state.json").read_text() == "5"
        expected = make_tiny_model(seed=2 if killed_after == "the exchange" else 1)
        assert torch.equal(load_pretrained(str(out)).lm_head.weight, expected.lm_head.weight)
        staging_dir(out)  # its final save starts from an empty staging folder
        assert list((tmp_path / ".model.saving").iterdir()) == [] and not (tmp_path / ".model.saving.old").exists()
        assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-10", "checkpoint-5"]


BAD_VALUES = [
    ("--learning_rate", "-1"), ("--learning_rate", "nan"), ("--per_device_train_batch_size", "0"),
    ("--per_device_eval_batch_size", "0"), ("--gradient_accumulation_steps", "0"), ("--max_steps", "0"),
    ("--adam_beta2", "1.5"), ("--weight_decay", "-0.1"), ("--seed", "-1"), ("--save_steps", "0"),
    ("--max_minutes", "0"), ("--max_minutes", "-2"),
]


@pytest.mark.parametrize("flag, value", BAD_VALUES, ids=[f"{f}={v}" for f, v in BAD_VALUES])
def test_bad_training_values_fail_before_any_work(tmp_path, capsys, monkeypatch, flag, value):
    def no_corpus_work(**kwargs):
        raise AssertionError("the corpus was read before the arguments were checked")

    monkeypatch.setattr(minigpt.training, "load_text_datasets", no_corpus_work)
    out = tmp_path / "out"
    assert run_cli(*command(corpus_file(tmp_path), out), flag, value) == 2
    assert flag in one_error_line(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt"]  # nothing written, not even a lock


def test_an_unwritable_output_dir_fails_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(minigpt.training, "load_text_datasets", lambda **kwargs: pytest.fail("corpus read"))
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert run_cli(*command(corpus_file(tmp_path), blocker / "out")) == 2
    assert "cannot write" in one_error_line(capsys.readouterr().err)
    monkeypatch.chdir(tmp_path)
    assert run_cli(*command(corpus_file(tmp_path), "."), "--overwrite_output_dir") == 2  # would replace the cwd
    assert "holds the current folder" in one_error_line(capsys.readouterr().err)

    mount = tmp_path / "small"
    mount.mkdir()
    for options, message in (("size=4m", "MiB free"), ("ro,size=4m", "Read-only")):
        if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)],
                          capture_output=True, check=False).returncode != 0:
            pytest.skip("cannot mount a small or read-only file system here (needs root)")
        try:
            assert run_cli(*command(corpus_file(tmp_path), mount / "out")) == 2
            assert message in one_error_line(capsys.readouterr().err)
            assert list(mount.iterdir()) == []
        finally:
            subprocess.run(["umount", str(mount)], check=True)


def test_generation_past_the_context_is_refused_before_the_first_token(tiny_model):
    context = tiny_model.config.max_position_embeddings  # 64
    prompt = torch.randint(2, 60, (1, 10))
    calls = []
    hook = tiny_model.register_forward_hook(lambda *args: calls.append(1))
    with pytest.raises(ValueError, match="pass max_new_tokens=54 or less"):
        tiny_model.generate(prompt, max_new_tokens=60, do_sample=False)
    # however generate() is told the length: its config, the model's defaults, max_length
    with pytest.raises(ValueError, match="plus the tokens to generate \\(60\\) exceed the context of 64"):
        tiny_model.generate(prompt, generation_config=GenerationConfig(max_new_tokens=60))
    tiny_model.generation_config.max_new_tokens = 60
    with pytest.raises(ValueError, match="pass max_new_tokens=54 or less"):
        tiny_model.generate(prompt)
    with pytest.raises(ValueError, match="exceed the context"):
        tiny_model.generate(input_ids=prompt, max_new_tokens=None, max_length=70)
    assert calls == []  # refused up front: nothing generated, nothing lost
    out = tiny_model.generate(prompt, max_new_tokens=54, do_sample=False, eos_token_id=None)
    assert out.shape[1] == context
    hook.remove()


def test_the_saved_generation_config_fits_a_prompt_of_half_the_context(tiny_model):
    class Tok:
        bos_token_id = eos_token_id = 1
        pad_token_id = 0

    tiny_model.generation_config = sampling_generation_config(tiny_model, Tok())
    prompt = torch.randint(2, 60, (1, tiny_model.config.max_position_embeddings // 2))
    out = tiny_model.generate(prompt, attention_mask=torch.ones_like(prompt))  # the saved defaults, as is
    assert out.shape[1] <= tiny_model.config.max_position_embeddings
