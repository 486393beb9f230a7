"""The runs folder on disk, kept bounded and truthful: a finished job becomes a run folder (beside the pipeline's
own records, run_settings.json among them, the app's record app_run.json: its owner, how many steps it ran,
whether it was stopped, its corpus as the app names it) and joins the model lists; a visitor keeps their newest
MINIGPT_APP_MAX_RUNS_PER_VISITOR runs (their new run replaces their own oldest), and the app at most
MINIGPT_APP_MAX_RUNS, making room with other visitors' runs older than an hour or the visitor's own, never another
visitor's fresh run (a new run is refused instead); a folder the app named but did not record (a training cut off
by a killed server) is removed at start; zips are made on demand and do not pile up."""

import json
import logging
import re
import shutil
import time
import uuid
import zipfile
from pathlib import Path

from minigpt.hub import shared_files
from space.jobs import MARK_SUFFIX, TrainingJob, discard, run_in_process, running_mark
from space.registry import APP_RUN_FILE, ModelError
from space.texts import UPLOADED_CORPUS, friendly
from space.uploads import zips_folder
from space.visitors import owner_hash

logger = logging.getLogger("minigpt.app")

EVICTABLE_AFTER_SECONDS = 3600  # another visitor's run may make room for a new one only when older than this
RUN_NAME = re.compile(r"^\d{8}-\d{6}-[a-z0-9]+-[a-z]+x*$")  # what new_run_name makes


class RunsFull(Exception):
    """The app keeps MINIGPT_APP_MAX_RUNS runs and none of them may make room yet."""


def new_run_name(ctx, preset: str, tokenizer_type: str) -> str:
    name = f"{time.strftime('%Y%m%d-%H%M%S')}-{preset}-{tokenizer_type}"
    while (ctx.runs_dir / name).exists() or (ctx.tmp_dir / "uploads" / name).exists():
        name += "x"
    return name


def train_and_keep(ctx, job: TrainingJob) -> None:
    """The training line's runner: train `job` in a child process, then keep its run (recorded, registered, older
    runs pruned) or discard what it left; its uploads go either way."""
    try:
        last_word = run_in_process(job, ctx.training_context, ctx.limits.max_minutes * 60, on_space=ctx.on_space)
        if "error" in last_word:
            kind, text = last_word["error"]
            codes = {"killed": f"killed:{text}", "time_budget": f"time_budget_data:{ctx.limits.max_minutes:g}",
                     "stopped": "stopped_early"}
            job.fail(codes.get(kind) or friendly(Exception(text)))
            discard(job.output_dir)
            return
        record = {"owner": owner_hash(job.owner), "steps": job.snapshot().step, "stopped": job.stop_event.is_set(),
                  "corpus": UPLOADED_CORPUS if job.private_corpus else job.corpus, "finished_at": time.time()}
        (job.output_dir / APP_RUN_FILE).write_text(json.dumps(record, indent=2))
        running_mark(job.output_dir).unlink(missing_ok=True)
        try:
            entry = ctx.registry.add_run(job.output_dir)
        except ModelError as error:
            job.fail(str(error))
            discard(job.output_dir)
            return
        prune_runs(ctx, job.owner, keep=entry.key)
        job.finish(entry.key)
    finally:
        if job.cleanup is not None:
            shutil.rmtree(job.cleanup, ignore_errors=True)


def _age(entry) -> float:
    """Seconds since the run ended (its record was written)."""
    try:
        return time.time() - (Path(entry.path) / APP_RUN_FILE).stat().st_mtime
    except OSError:
        return float("inf")


def _room_makers(runs, owner: str, keep: str | None = None) -> list:
    """The runs that may go to make room for `owner`'s new run, in the order they go: other visitors' runs older
    than EVICTABLE_AFTER_SECONDS, then the owner's own, each oldest first."""
    mine = owner_hash(owner)
    others = [e for e in runs if e.key != keep and e.summary.get("owner") != mine and _age(e) > EVICTABLE_AFTER_SECONDS]
    own = [e for e in runs if e.key != keep and e.summary.get("owner") == mine]
    return sorted(others, key=_age, reverse=True) + sorted(own, key=_age, reverse=True)


def check_room(ctx, owner: str) -> None:
    """Before a job joins the line: RunsFull when the app's runs and the trainings under way fill
    MINIGPT_APP_MAX_RUNS and too few runs may make room (the visitor's own, others' older than an hour)."""
    runs = ctx.registry.runs()
    over = len(runs) + len(ctx.line.active()) + 1 - ctx.limits.max_runs
    if over > 0 and len(_room_makers(runs, owner)) < over:
        raise RunsFull


def prune_runs(ctx, owner: str, keep: str | None = None) -> list[str]:
    """After `owner`'s run `keep` is added: their own runs beyond MINIGPT_APP_MAX_RUNS_PER_VISITOR go (oldest
    first), then, beyond MINIGPT_APP_MAX_RUNS, other visitors' runs older than an hour and their own. Returns the
    keys removed."""
    runs = ctx.registry.runs()  # newest first
    mine = [e for e in runs if e.summary.get("owner") == owner_hash(owner) and e.key != keep]
    doomed = mine[max(0, ctx.limits.max_runs_per_visitor - 1):]
    over = len(runs) - len(doomed) - ctx.limits.max_runs
    if over > 0:
        doomed += [e for e in _room_makers(runs, owner, keep) if e not in doomed][:over]
    for entry in doomed:
        ctx.registry.remove_run(entry.key)
        discard(Path(entry.path))
        logger.info("removed %s: runs kept per visitor %d, in all %d", entry.key, ctx.limits.max_runs_per_visitor,
                    ctx.limits.max_runs)
    return [entry.key for entry in doomed]


def remove_unfinished_runs(runs_dir: Path) -> list[str]:
    """At start: a run still marked as training, or a folder named as the app names runs but without the app's
    record (app_run.json, written when a training ends), was cut off by a killed server; it goes (with what the
    pipeline kept beside it). Other folders (another program's) are left alone, and not listed."""
    if not runs_dir.is_dir():
        return []
    names = {mark.name[1:-len(MARK_SUFFIX)] for mark in runs_dir.glob(f".*{MARK_SUFFIX}")}
    names |= {path.name for path in runs_dir.iterdir()
              if path.is_dir() and RUN_NAME.match(path.name) and not (path / APP_RUN_FILE).is_file()}
    for name in sorted(names):
        discard(runs_dir / name)
    return sorted(names)


def make_zip(folder: Path) -> Path:
    """The finished model as a zip (no checkpoints, pickles or temporary files), in Gradio's file folder so that it
    is served without a copy; one per run (a finished run does not change), removed by the upload janitor a few
    minutes after its last download (space/uploads.py)."""
    for made in zips_folder().glob(f"*/{folder.name}.zip"):
        made.touch()
        return made
    target = zips_folder() / uuid.uuid4().hex / f"{folder.name}.zip"  # an unguessable folder: Gradio serves it
    target.parent.mkdir(parents=True)
    partial = target.with_suffix(".part")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in shared_files(folder):  # what a push to the Hub would take
            archive.write(path, Path(folder.name) / path.relative_to(folder))
    partial.replace(target)
    return target
