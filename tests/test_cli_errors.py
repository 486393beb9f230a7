"""The command line as an unlucky stranger uses it: every bad value refused in one line before the corpus is read,
a diverging run stopped with its last finite checkpoint kept, a full disk said in one line and resumed, "already
finished" only for the same run (read-only folder included), and a quiet console."""

import contextlib
import gc
import subprocess
from pathlib import Path

import pytest
import safetensors.torch
import torch
from test_integrity import command, copy_of, one_error_line, snapshot
from test_training import ROOT, TINY, corpus_file, run_cli

import minigpt.training
from minigpt.run_folder import checkpoint_is_complete

BEFORE_THE_CORPUS = [
    (["--warmup_steps", "nan"], "--warmup_steps"),
    (["--warmup_steps", "inf"], "--warmup_steps"),
    (["--warmup_steps", "50"], "--warmup_steps"),  # longer than the 10-step run
    (["--eval_steps", "0"], "--eval_steps"),
    (["--eval_steps", "-1"], "--eval_steps"),
    (["--logging_steps", "0"], "--logging_steps"),
    (["--lr_scheduler_kwargs", '{"num_decay_steps": 1000}'], "num_decay_steps"),
    (["--lr_scheduler_kwargs", '{"num_decay_steps": "nan"}'], "--lr_scheduler_kwargs"),
    (["--lr_scheduler_kwargs", '{"decay_steps": 3}'], "decay_steps"),
    (["--label_smoothing_factor", "1.5"], "--label_smoothing_factor"),
    (["--data_seed", "-1"], "--data_seed"),
    (["--max_grad_norm", "nan"], "--max_grad_norm"),
    (["--save_total_limit", "0"], "--save_total_limit"),
    (["--preprocessing_num_workers", "0"], "--preprocessing_num_workers"),
    (["--config_overrides", "n_embd=64,n_layer=2,n_head=3"], "--config_overrides"),
    (["--config_overrides", "n_embd=64,n_layer=0,n_head=2"], "--config_overrides"),
    (["--vocab_size", "10"], "--vocab_size"),
    (["--train_file", "FOLDER"], "--train_file"),
]


@pytest.mark.parametrize("extra, named", BEFORE_THE_CORPUS, ids=[" ".join(e) for e, _ in BEFORE_THE_CORPUS])
def test_a_bad_value_is_one_line_before_the_corpus_is_read(tmp_path, capsys, monkeypatch, extra, named):
    monkeypatch.setattr(minigpt.training, "load_text_datasets", lambda **kwargs: pytest.fail("corpus read"))
    extra = [str(tmp_path) if value == "FOLDER" else value for value in extra]
    out = tmp_path / "out"
    assert run_cli(*command(corpus_file(tmp_path), out), *extra) == 2
    assert named in one_error_line(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt"]  # no folder, no lock


@pytest.mark.parametrize("extra, named", [(["--per_device_train_batch_size", "100000"], "per_device_train_batch_size"),
                                          (["--block_size", "100000"], "--block_size")])
def test_what_needs_the_corpus_is_checked_before_the_tokenizer_is_trained(tmp_path, capsys, monkeypatch, extra,
                                                                          named):
    monkeypatch.setattr(minigpt.training, "train_tokenizer", lambda *a, **k: pytest.fail("tokenizer trained"))
    out = tmp_path / "out"
    assert run_cli(*command(corpus_file(tmp_path), out), *extra) == 2
    assert named in one_error_line(capsys.readouterr().err)
    assert not out.exists()


def test_a_batch_of_more_blocks_than_the_data_is_refused_after_tokenizing(tmp_path, capsys):
    """Fewer blocks than one batch, though the bytes would allow it: counted after tokenizing, said exactly."""
    out = tmp_path / "out"
    assert run_cli(*command(corpus_file(tmp_path), out), "--per_device_train_batch_size", "150") == 2
    line = one_error_line(capsys.readouterr().err)
    assert "--per_device_train_batch_size 150 is more than the training split's" in line, line
    assert not out.exists()


def finite(checkpoint: Path) -> bool:
    weights = safetensors.torch.load_file(checkpoint / "model.safetensors")
    return all(torch.isfinite(t).all() for t in weights.values())


def test_a_diverging_run_stops_in_one_line_and_keeps_its_last_finite_checkpoint(tmp_path, capsys):
    """--learning_rate 1e6 after a warmup: the first steps are finite and saved, then the loss is NaN (the
    checkpoint whose weights gave it is dropped). The same command resumes and says so again; no sample crashes
    the run; nothing says finished."""
    corpus, out = corpus_file(tmp_path), tmp_path / "run"
    diverging = [*command(corpus, out, max_steps=12), "--learning_rate", "1e6", "--warmup_steps", "4",
                 "--save_steps", "1", "--eval_steps", "2", "--save_total_limit", "20"]
    assert run_cli(*diverging) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "training diverged at step" in line and "lower --learning_rate" in line and "is kept" in line, line
    kept = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert kept and all(finite(p) for p in kept) and kept[-1].name in line
    step = int(line.split("diverged at step ")[1].split(":")[0])
    assert int(kept[-1].name.split("-")[1]) < step - ("training loss" in line)  # its weights gave a finite loss
    assert not (out / "model.safetensors").exists() and not (out / "run_settings.json").exists()

    assert run_cli(*diverging) == 2  # resumed from the kept checkpoint (the same run): the same line
    assert one_error_line(capsys.readouterr().err) == line


def test_a_divergence_before_any_checkpoint_leaves_no_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(*command(corpus_file(tmp_path), out), "--learning_rate", "1e6", "--warmup_steps", "0") == 2
    assert "training diverged" in one_error_line(capsys.readouterr().err)
    assert not out.exists()


@contextlib.contextmanager
def small_disk(folder: Path, size: str):
    """A tmpfs of `size` mounted on `folder` (made here) while the block lasts; the test is skipped without root."""
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a small file system here (needs root)")
    try:
        yield folder
    finally:
        gc.collect()  # a finished run's objects in reference cycles may still hold files there (mapped weights)
        subprocess.run(["umount", str(folder)], check=True)


# ----------------------------------------------------------------------------------------------------------------
# Run identity


@pytest.mark.parametrize("extra, differs", [(["--data_seed", "7"], "data_seed"),
                                            (["--label_smoothing_factor", "0.1"], "label_smoothing_factor"),
                                            (["--precision", "bf16"], "precision"),
                                            (["--optim_args", "foo=1"], "optim_args")])
def test_a_setting_that_changes_the_weights_is_another_run(finished_run, tmp_path, capsys, extra, differs):
    corpus, source, _ = finished_run
    out = copy_of(source, tmp_path)
    before = snapshot(out)
    assert run_cli(*command(corpus, out), *extra) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"finished run with other settings ({differs} " in line, line
    assert snapshot(out) == before


def test_the_same_overrides_in_another_order_or_names_are_the_same_run(finished_run, tmp_path, capsys):
    corpus, source, _ = finished_run
    out = copy_of(source, tmp_path)
    same = [value if value != "n_embd=64,n_layer=2,n_head=2" else "num_attention_heads=2,n_layer=2,hidden_size=64"
            for value in command(corpus, out)]
    assert same != command(corpus, out)
    capsys.readouterr()
    assert run_cli(*same, "--logging_steps", "3", "--save_steps", "7", "--output_dir", out) == 0  # not compared
    assert "already finished" in capsys.readouterr().out


def test_a_finished_run_on_a_read_only_folder_is_already_finished(finished_run, tmp_path, capsys):
    corpus, source, _ = finished_run
    with small_disk(tmp_path / "ro", "16m") as mount:
        out = copy_of(source, mount)
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        capsys.readouterr()
        assert run_cli(*command(corpus, out)) == 0
        assert "already finished" in capsys.readouterr().out
        assert run_cli(*command(corpus, out, max_steps=12)) == 2  # another run: it cannot be written there
        assert "Read-only" in one_error_line(capsys.readouterr().err)


# ----------------------------------------------------------------------------------------------------------------
# The console


def test_with_disable_tqdm_the_console_has_no_bar_and_one_compact_line_per_log(finished_run):
    _, _, shown = finished_run
    for noise in ("%|", "\x1b[A", "Filter", "Writing model shards", "'loss'", "'eval_loss'", "mfu"):
        assert noise not in shown, noise  # no bar of any library, no dicts of quoted numbers, no CPU MFU
    lines = [line for line in shown.splitlines() if line.startswith("step ")]
    train_lines = [line for line in lines if "| loss " in line]
    assert [line.split(" | ")[0] for line in train_lines] == ["step 5/10", "step 10/10"]
    loss = float(train_lines[0].split("| loss ")[1].split(" |")[0])
    assert 0 < loss < 10
    assert "eta" not in train_lines[0] and "eta" in train_lines[1]  # the first interval holds the warm-up
    assert sum("| eval loss " in line for line in lines) == 3  # before, at step 5, at step 10


def test_log_level_error_prints_the_final_line_only(train_py_runs):
    """In a fresh process (conftest's train_py_runs): what it prints on import counts too."""
    _, _, code, shown = train_py_runs["log_level_error"]
    assert code == 0, shown[-3000:]
    printed = [line for line in shown.splitlines() if line.strip()]
    assert len(printed) == 1 and printed[0].startswith("done: ") and "model saved in" in printed[0], printed


# ----------------------------------------------------------------------------------------------------------------
# A full disk


def test_a_disk_that_fills_during_a_checkpoint_is_one_line_and_the_same_command_resumes(tmp_path, capsys, caplog):
    """A 24 MB disk: the first checkpoints fit, a later one fills it inside torch.save (whose error has no errno)."""
    with small_disk(tmp_path / "disk", "24m") as mount:
        out = mount / "run"
        big = [value if value != "n_embd=64,n_layer=2,n_head=2" else "n_embd=128,n_layer=4,n_head=2"
               for value in command(corpus_file(tmp_path), out, max_steps=3)]
        run = [*big, "--save_steps", "1", "--eval_steps", "3"]
        assert run_cli(*run) == 2
        line = one_error_line(capsys.readouterr().err)
        assert f"the disk of {out} is full" in line and "MiB free" in line and "needs about" in line, line
        kept = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        assert [p.name for p in kept] == [f"checkpoint-{step}" for step in range(1, len(kept) + 1)] and kept
        assert all(checkpoint_is_complete(p) for p in kept)  # whole; the half-written one went

        subprocess.run(["mount", "-o", "remount,size=200m", str(mount)], check=True)
        caplog.set_level("INFO", logger="minigpt")
        assert run_cli(*run) == 0
        assert f"Resuming from {kept[-1]}" in caplog.text
        assert (out / "model.safetensors").is_file()


def test_a_full_data_cache_is_one_line(tmp_path, capsys, monkeypatch):
    """datasets wraps the OSError of a full cache in its own error: still one line, naming the cache's folder."""
    import datasets

    with small_disk(tmp_path / "cache", "1m") as cache:
        monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(cache))
        corpus = ROOT / "minigpt" / "data" / "tinyshakespeare.txt"  # 1.1 MB: more than the cache's disk
        assert run_cli(*command(corpus, tmp_path / "run")) == 2
        line = one_error_line(capsys.readouterr().err)
        assert f"the disk of {cache}" in line and "is full" in line and "HF_DATASETS_CACHE" in line, line
        assert not (tmp_path / "run").exists()
