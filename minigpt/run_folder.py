"""The output folder of a run, kept true to what happened:

- one process at a time: an exclusive lock (filelock) on a file beside the folder (`.<name>.lock`, holding the
  owner's PID);
- resumed only by the command that started it: the run's settings travel in every checkpoint (trainer_state.json)
  and in the finished folder (run_settings.json), and a command with other settings is refused;
- replaced as a whole at the end: the finished folder is built beside the old one and swapped in by one rename,
  so that a reader sees the old folder or the new one, never a mix; the old folder's checkpoints then move into
  the new one, and where a kill stopped that, the next run on the folder finishes it before anything else.
"""

import contextlib
import ctypes
import errno
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from minigpt.errors import SetupError

logger = logging.getLogger("minigpt")

RUN_SETTINGS_FILE = "run_settings.json"
TIME_PLAN_KEY = "time_plan"  # in run_settings.json: what a --max_minutes run made of its budget (a record)
INITIAL_DIR = "step-0"  # a finished folder's sub-folder: the model before training (weights, config, tokenizer)
_DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EEXIST}
_MIN_FREE_BYTES = 16 * 2**20


class UnwritableFolder(SetupError):
    """The output folder cannot take a file (read-only, no permission, full): a run that is already finished
    there is still "already finished"."""


def disk_error_message(error: OSError, where, needed: str = "") -> str | None:
    """One line for the OSErrors a user fixes on their side (disk full, read-only, no permission), else None."""
    if error.errno not in _DISK_ERRORS:
        return None
    if error.errno == errno.ENOSPC:
        free = f"{free_bytes(where) / 2**20:.0f} MiB free" + (f"; {needed}" if needed else "")
        return (f"the disk of {where} is full ({free}): free some space, or write elsewhere (--output_dir, and "
                "HF_DATASETS_CACHE for the data cache)")
    return f"cannot write {where}: {error.strerror}; pass another --output_dir or free some space"


def os_error_behind(error: BaseException) -> OSError | None:
    """The OSError that `error` is, or that caused it (a library may wrap one in its own error)."""
    while error is not None and not isinstance(error, OSError):
        error = error.__cause__ or error.__context__
    return error


def free_bytes(path) -> int:
    """The room on the disk of `path` (of its nearest existing parent, for a path not made yet)."""
    existing = next(p for p in (Path(path).absolute(), *Path(path).absolute().parents) if p.exists())
    return shutil.disk_usage(existing).free


def fullest_disk(*folders) -> str:
    """The folder, of `folders`, whose disk has the least room."""
    return str(min(folders, key=free_bytes))


# What torch.save says when the disk fills under it (its C++ writer gives no errno)
_TORCH_WRITE_FAILED = ("unexpected pos", "PytorchStreamWriter failed", "iostream error", "file write failed")


def _is_disk_full(error: BaseException) -> bool:
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    return isinstance(error, RuntimeError) and any(text in str(error) for text in _TORCH_WRITE_FAILED)


@contextlib.contextmanager
def full_disk_is_one_line(output_dir, needed_bytes: int):
    """A disk that fills while a checkpoint or the finished folder is written: the half-written checkpoint goes
    (the earlier ones are whole: the Trainer deletes old checkpoints only after a new one is saved), and one line
    says where, how much is needed and that the same command resumes."""
    try:
        yield
    except (OSError, RuntimeError) as error:
        if not _is_disk_full(error):
            raise
        with contextlib.suppress(OSError):
            find_resumable_checkpoint(str(output_dir))  # removes the half-written one: it holds the space
        free = free_bytes(output_dir)
        raise SetupError(f"the disk of {output_dir} is full ({free / 2**20:.0f} MiB free; a checkpoint of this "
                         f"model needs about {needed_bytes / 2**20:.0f} MiB): free some space and run the same "
                         "command again (it resumes from its last checkpoint), or pass another --output_dir") from None


# ----------------------------------------------------------------------------------------------------------------
# One process per output folder


def _sibling(output_dir, kind: str) -> Path:
    """A hidden path beside output_dir, on the same file system (so that renames between them are atomic)."""
    target = Path(output_dir).absolute()
    return target.parent / f".{target.name}.{kind}"


class OutputDirLock:
    """An exclusive lock on output_dir: a filelock.FileLock (flock) on `.<name>.lock` beside it, which names its
    owner's PID. The kernel drops a flock when its process dies, so the lock a killed run leaves behind is simply
    taken over. The file goes when the lock is released (deleted while still held: FileLock checks that the file
    it locked is still the one at that path)."""

    def __init__(self, output_dir):
        self.output_dir = Path(output_dir)
        self.path = _sibling(output_dir, "lock")
        self.lock = FileLock(self.path, timeout=0)

    def __enter__(self):
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self.lock.acquire()
            except Timeout:
                owner = self.path.read_text(errors="replace").strip() or "?"
                raise SetupError(f"{self.output_dir} is in use by PID {owner} (another training run); wait for "
                                 "it to finish or pass another --output_dir") from None
            self.path.write_text(f"{os.getpid()}\n")
            finish_interrupted_swap(self.output_dir)
            check_writable(self.output_dir)
        except OSError as error:
            self.__exit__()
            message = disk_error_message(error, self.output_dir)
            if message is None:
                raise
            raise UnwritableFolder(message) from None
        except SetupError:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info):
        if self.lock.is_locked:
            with contextlib.suppress(OSError):
                self.path.unlink()
            self.lock.release()


def check_writable(output_dir: Path) -> None:
    """Fail now, not after the corpus and tokenizer work: the folder (or its parent) must take a file, and the
    disk must not be full."""
    if output_dir.exists() and not output_dir.is_dir():
        raise SetupError(f"--output_dir {output_dir} is a file; pass a folder")
    if Path.cwd().resolve().is_relative_to(output_dir.resolve()):  # the whole folder is replaced at the end
        raise SetupError(f"--output_dir {output_dir} holds the current folder; pass a folder of its own, "
                         "e.g. runs/minigpt")
    probe_dir = output_dir if output_dir.is_dir() else output_dir.absolute().parent
    probe = probe_dir / f".write-test-{os.getpid()}"
    probe.write_bytes(b"")
    probe.unlink()
    free = shutil.disk_usage(probe_dir).free
    if free < _MIN_FREE_BYTES:
        raise UnwritableFolder(f"cannot write {output_dir}: only {free // 2**20} MiB free on its disk; free some "
                               "space or pass another --output_dir")


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints and the settings they were trained with


def checkpoint_is_complete(path: Path) -> bool:
    """The Trainer writes trainer_state.json last on the main process, but each process its own random state: a
    checkpoint is complete when its state file parses and its weights and every process's random state are there
    (the run's world size is in its recorded settings)."""
    try:
        state = json.loads((path / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    settings = _recorded_settings(state) or {}
    world_size = settings.get("world_size", 1)
    rng_files = [f"rng_state_{rank}.pth" for rank in range(world_size)] if world_size > 1 else []
    return (path / "model.safetensors").is_file() and all((path / name).is_file() for name in rng_files)


def find_resumable_checkpoint(output_dir: str) -> str | None:
    """The newest complete checkpoint-N in output_dir (transformers' get_last_checkpoint); half-written ones (a
    killed save) are removed."""
    if not Path(output_dir).is_dir():
        return None
    while (last := get_last_checkpoint(output_dir)) is not None:
        if checkpoint_is_complete(Path(last)):
            return last
        logger.warning("removing %s: it was not completely written (the run was interrupted while saving)", last)
        shutil.rmtree(last)
    return None


class RunSettingsCallback(TrainerCallback, ExportableState):
    """Puts the run's settings into every checkpoint's trainer_state.json (written in the same file, at the same
    moment, as the rest of the checkpoint's state), where `plan_run` finds them."""

    def __init__(self, settings: dict):
        self.settings = settings

    def state(self) -> dict:
        return {"args": {"settings": self.settings}, "attributes": {}}


def checkpoint_settings(checkpoint) -> dict | None:
    return _recorded_settings(json.loads((Path(checkpoint) / "trainer_state.json").read_text()))


def _recorded_settings(trainer_state: dict) -> dict | None:
    saved = trainer_state.get("stateful_callbacks", {}).get(RunSettingsCallback.__name__)
    return saved["args"]["settings"] if isinstance(saved, dict) else None


def finished_settings(output_dir) -> dict | None:
    """The settings of the finished run in output_dir, or None when there is none (without the time plan that
    run_settings.json also records: what the run made of its settings, not one of them)."""
    try:
        settings = json.loads((Path(output_dir) / RUN_SETTINGS_FILE).read_text())
    except (OSError, ValueError):
        return None
    if isinstance(settings, dict):
        settings.pop(TIME_PLAN_KEY, None)
    return settings


def describe_difference(saved: dict, wanted: dict, limit: int = 3) -> str:
    """What differs, setting by setting; within a nested setting, what differs in it, e.g. for a corpus file
    changed in place: "corpus_files /data/big.txt blake2b '3f2a...' -> '9b1c...', bytes 1000 -> 1200"."""
    keys = [k for k in sorted(saved.keys() | wanted.keys()) if saved.get(k) != wanted.get(k)]
    shown = [f"{k} {describe_difference(saved[k], wanted[k], limit)}"
             if isinstance(saved.get(k), dict) and isinstance(wanted.get(k), dict) and saved[k] and wanted[k]
             else f"{k} {saved.get(k)!r} -> {wanted.get(k)!r}" for k in keys[:limit]]
    return ", ".join(shown) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


@dataclass
class RunPlan:
    """What a training command does with its output folder."""

    resume_from: str | None = None  # a checkpoint of this same run
    finished: bool = False  # the folder already holds this run, finished: nothing to do
    fresh: bool = False  # --overwrite_output_dir: old checkpoints go before training starts


_HOW = "pass --overwrite_output_dir to start fresh there, or another --output_dir"


def plan_run(output_dir, settings: dict, *, overwrite: bool, resume_from_checkpoint: str | None) -> RunPlan:
    """Resume a checkpoint only when it was trained with these settings; refuse (one line: what differs and what to
    do) rather than mix two runs in one folder."""
    if overwrite:
        if resume_from_checkpoint:
            raise SetupError("--overwrite_output_dir starts fresh and --resume_from_checkpoint resumes: pass one")
        return RunPlan(fresh=True)
    target = Path(output_dir)
    finished = finished_settings(target)
    if finished == settings:
        return RunPlan(finished=True)
    checkpoint = resume_from_checkpoint or find_resumable_checkpoint(str(target))
    if checkpoint and not (Path(checkpoint).is_dir() and checkpoint_is_complete(Path(checkpoint))):
        raise SetupError(f"--resume_from_checkpoint {checkpoint}: not a complete checkpoint folder")
    saved = checkpoint_settings(checkpoint) if checkpoint else None
    if saved == settings:
        return RunPlan(resume_from=checkpoint)
    if finished is not None:
        raise SetupError(f"{target} holds a finished run with other settings "
                         f"({describe_difference(finished, settings)}); {_HOW}")
    if checkpoint:
        what = "other settings" if saved else "settings it does not record"
        difference = f" ({describe_difference(saved, settings)})" if saved else ""
        raise SetupError(f"{checkpoint} was trained with {what}{difference}; {_HOW}")
    if target.is_dir() and any(target.iterdir()):
        raise SetupError(f"{target} already exists and holds something other than this run; {_HOW}")
    return RunPlan()


def drop_checkpoints_from(output_dir, step: int) -> str | None:
    """After a diverged run: remove the checkpoints of `step` and later (their weights gave a loss that is not
    finite). Returns the newest checkpoint left."""
    for path in Path(output_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        if path.name.split("-")[-1].isdigit() and int(path.name.split("-")[-1]) >= step:
            logger.warning("removing %s: its weights gave a loss that is not finite", path.name)
            shutil.rmtree(path)
    return find_resumable_checkpoint(str(output_dir))


def remove_checkpoints(output_dir) -> None:
    for path in Path(output_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        shutil.rmtree(path)


def remove_run_folder(output_dir) -> None:
    """output_dir and what the pipeline keeps beside it (its staging folders and lock file), for a caller that
    discards a run it owns (no run may hold the lock)."""
    staging = _sibling(output_dir, "saving")
    for folder in (Path(output_dir), staging, _old_sibling(staging)):
        shutil.rmtree(folder, ignore_errors=True)
    _sibling(output_dir, "lock").unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------------------------
# The final folder, swapped in whole


def staging_dir(output_dir) -> Path:
    """An empty folder beside output_dir in which the finished folder is built (what a killed save left is gone)."""
    finish_interrupted_swap(output_dir)
    path = _sibling(output_dir, "saving")
    shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(_old_sibling(path), ignore_errors=True)
    path.mkdir(parents=True)
    return path


def _old_sibling(staging: Path) -> Path:
    return staging.with_name(staging.name + ".old")


def finish_interrupted_swap(output_dir) -> None:
    """What a swap_in killed part-way left undone: the previous folder back where swap_in's two-rename fallback
    was killed between its renames, and the checkpoints still in the previous folder moved into output_dir (the
    next staging_dir removes the rest). With the folder's lock held."""
    target = Path(output_dir).absolute()
    staging = _sibling(output_dir, "saving")
    old = _old_sibling(staging)
    if old.is_dir() and not target.exists():
        os.rename(old, target)
    if target.is_dir():
        for previous in (staging, old):  # a half-built staging folder holds no checkpoints: nothing moves
            if previous.is_dir():
                _move_checkpoints(previous, target)


def _move_checkpoints(source: Path, target: Path) -> None:
    for checkpoint in source.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        if not (target / checkpoint.name).exists():
            os.rename(checkpoint, target / checkpoint.name)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(a))


def swap_in(staging: Path, output_dir) -> None:
    """Make `staging` (a complete folder) output_dir in one step; the old folder's checkpoints move into it."""
    target = Path(output_dir).absolute()
    if not target.exists():
        os.rename(staging, target)
        return
    if not _exchange(staging, target):  # elsewhere: two renames, with a moment in which output_dir is missing
        os.rename(target, _old_sibling(staging))
        os.rename(staging, target)
        staging = _old_sibling(staging)
    old = staging  # after the exchange, the staging path holds the previous folder
    _move_checkpoints(old, target)  # killed before the end, finish_interrupted_swap moves the rest
    shutil.rmtree(old)
