"""The runs folder on disk, kept bounded and truthful: a finished job becomes a run folder (with app_run.json
naming its owner) and joins the model lists; only the newest MINIGPT_APP_MAX_RUNS visitor runs are kept; a
half-written folder left by a killed server is removed at start; zips are made on demand and do not pile up."""

import json
import logging
import shutil
import time
import uuid
import zipfile
from pathlib import Path

from space.jobs import MARK_SUFFIX, TrainingJob, discard, run_in_process, running_mark
from space.registry import APP_RUN_FILE, ModelError
from space.texts import friendly
from space.visitors import owner_hash

logger = logging.getLogger("minigpt.app")

ZIP_LIFETIME_SECONDS = 600  # a zip is for the download that asked for it; older ones are removed


def run_job(ctx, job: TrainingJob) -> None:
    """The training line's runner: train in a child process, then register, prune and clean up."""
    try:
        last_word = run_in_process(job, ctx.limits.max_minutes * 60, hide_owner_token=ctx.on_space)
        if "error" in last_word:
            kind, text = last_word["error"]
            job.fail(f"killed:{text}" if kind == "killed" else friendly(Exception(text)))
            discard(job.output_dir)
            return
        snap = job.snapshot()
        corpus = "uploaded text" if job.private_corpus else job.settings["corpus"]
        info = {**job.settings, "corpus": corpus, "owner": owner_hash(job.owner), "steps": snap.step,
                "stopped": job.stop_event.is_set(), "eval_loss": last_word["done"].get("eval_loss"),
                "finished_at": time.time()}
        (job.output_dir / APP_RUN_FILE).write_text(json.dumps(info, indent=2))
        running_mark(job.output_dir).unlink(missing_ok=True)
        try:
            entry = ctx.registry.add_run(job.output_dir)
        except ModelError as error:
            job.fail(str(error))
            discard(job.output_dir)
            return
        prune_runs(ctx, keep=entry.key)
        job.finish(entry.key)
    finally:
        if job.cleanup is not None:
            shutil.rmtree(job.cleanup, ignore_errors=True)


def prune_runs(ctx, keep: str | None = None) -> list[str]:
    """Delete the oldest app runs beyond ctx.limits.max_runs (never `keep`); returns their keys. Runs that the
    app did not train (train.py's, launch-time folders) are not counted or touched."""
    app_runs = [e for e in ctx.registry.runs() if (Path(e.path) / APP_RUN_FILE).is_file()]
    removed = []
    for entry in app_runs[ctx.limits.max_runs:]:  # newest first
        if entry.key == keep:
            continue
        ctx.registry.remove_run(entry.key)
        discard(Path(entry.path))
        removed.append(entry.key)
        logger.info("removed %s: only the newest %d runs are kept", entry.key, ctx.limits.max_runs)
    return removed


def remove_unfinished_runs(runs_dir: Path) -> list[str]:
    """At start: a run still marked as training was cut off by a killed server; it goes (with what the pipeline
    kept beside it)."""
    removed = []
    for mark in sorted(runs_dir.glob(f".*{MARK_SUFFIX}")) if runs_dir.is_dir() else []:
        name = mark.name[1:-len(MARK_SUFFIX)]
        discard(runs_dir / name)
        removed.append(name)
    return removed


def make_zip(ctx, folder: Path) -> Path:
    """The finished model as a zip in the app's temp folder (checkpoints and temporary files left out); zips
    older than ZIP_LIFETIME_SECONDS (already downloaded) are removed first."""
    zips = ctx.tmp_dir / "zips"
    zips.mkdir(parents=True, exist_ok=True)
    for old in zips.glob("*/*.zip"):
        if time.time() - old.stat().st_mtime > ZIP_LIFETIME_SECONDS:
            shutil.rmtree(old.parent, ignore_errors=True)
    target = zips / uuid.uuid4().hex[:12] / f"{folder.name}.zip"  # one folder per download: no clash
    target.parent.mkdir()
    partial = target.with_suffix(".part")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder)
            if (path.is_dir() or path.is_symlink() or relative.parts[0].startswith(("checkpoint-", ".saving"))
                    or ".tmp" in path.name):
                continue
            archive.write(path, Path(folder.name) / relative)
    partial.replace(target)
    return target
