"""The app's one training at a time: the job a worker thread runs and every visitor watches, the Trainer callback
that feeds it, the board that holds the single slot, the input checks that build a job, the worker and the zip of
a finished run."""

import contextvars
import json
import logging
import re
import shutil
import threading
import time
import traceback
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

from transformers import TrainerCallback

from minigpt.corpus import BUILTIN_CORPORA, CorpusError
from minigpt.hub import HubError
from minigpt.loading import SetupError
from minigpt.monitoring import perplexity
from minigpt.training import DataArguments, MiniGPTTrainingArguments, ModelArguments, run_training
from space.registry import APP_RUN_FILE, ModelError
from space.texts import WHAT, app_error, friendly, msg

logger = logging.getLogger("minigpt.app")

APP_PRESETS = ("tiny", "small", "base")  # gpt2-sized training is not for a CPU Space


@dataclass
class JobSnapshot:
    id: str
    version: int
    state: str  # starting | running | stopping | finished | stopped | failed
    run_name: str
    settings: dict
    started: float
    ended: float | None
    step: int
    max_steps: int | None
    epoch: float
    tokens_seen: int
    tokens_per_second: float | None
    points: list  # dicts: step, tokens_seen, curve (train|validation), loss, perplexity
    samples: list
    error: str | None
    entry_key: str | None
    stop_requested_at: int | None  # the step the training was at when Stop was pressed

    @property
    def done(self) -> bool:
        return self.state in ("finished", "stopped", "failed")


class TrainingJob:
    """One training run in a worker thread. Trainer callbacks write its progress here under a condition
    variable; any number of viewers (the starting request, every visitor's timer) read snapshots of it."""

    def __init__(self, run_name: str, output_dir: Path, settings: dict, model_args, data_args, training_kwargs,
                 cleanup: Path | None = None):
        self.id = uuid.uuid4().hex[:12]
        self.run_name = run_name
        self.output_dir = output_dir
        self.settings = settings
        self.model_args, self.data_args, self.training_kwargs = model_args, data_args, training_kwargs
        self.cleanup = cleanup
        self.stop_event = threading.Event()
        self._cond = threading.Condition()
        self._version = 0
        self._state = "starting"
        self._started = time.time()
        self._ended = None
        self._step, self._max_steps, self._epoch, self._tokens_seen, self._tps = 0, None, 0.0, 0, None
        self._points: list[dict] = []
        self._samples: list[dict] = []
        self._error = None
        self._entry_key = None
        self._stop_requested_at = None
        self.thread: threading.Thread | None = None

    def _update(self, **changes) -> None:
        with self._cond:
            for name, value in changes.items():
                setattr(self, f"_{name}", value)
            self._version += 1
            self._cond.notify_all()

    def snapshot(self) -> JobSnapshot:
        with self._cond:
            return JobSnapshot(
                id=self.id, version=self._version, state=self._state, run_name=self.run_name,
                settings=dict(self.settings), started=self._started, ended=self._ended, step=self._step,
                max_steps=self._max_steps, epoch=self._epoch, tokens_seen=self._tokens_seen,
                tokens_per_second=self._tps, points=list(self._points), samples=list(self._samples),
                error=self._error, entry_key=self._entry_key, stop_requested_at=self._stop_requested_at,
            )

    def wait(self, after_version: int, timeout: float) -> JobSnapshot:
        with self._cond:
            self._cond.wait_for(lambda: self._version != after_version, timeout=timeout)
        return self.snapshot()

    @property
    def active(self) -> bool:
        with self._cond:
            return self._state in ("starting", "running", "stopping")

    def request_stop(self) -> None:
        with self._cond:
            self.stop_event.set()
            if self._state in ("starting", "running"):
                self._stop_requested_at = self._step
                self._state = "stopping"
                self._version += 1
                self._cond.notify_all()

    # called from the Trainer's thread
    def on_progress(self, state, logs: dict | None = None) -> None:
        with self._cond:
            if self._state == "starting":
                self._state = "stopping" if self.stop_event.is_set() else "running"
            self._step, self._max_steps = state.global_step, state.max_steps
            self._epoch = float(state.epoch or 0.0)
            if logs:
                self._tokens_seen = int(logs.get("tokens_seen", self._tokens_seen))
                if "tokens_per_second" in logs:
                    self._tps = float(logs["tokens_per_second"])
                if "loss" in logs:
                    self._points.append({"step": state.global_step, "tokens_seen": self._tokens_seen,
                                         "curve": "train", "loss": float(logs["loss"]),
                                         "perplexity": perplexity(float(logs["loss"]))})
                if "eval_loss" in logs and not any(p["curve"] == "validation" and p["step"] == state.global_step
                                                   for p in self._points):
                    self._points.append({"step": state.global_step, "tokens_seen": self._tokens_seen,
                                         "curve": "validation", "loss": float(logs["eval_loss"]),
                                         "perplexity": perplexity(float(logs["eval_loss"]))})
            self._version += 1
            self._cond.notify_all()

    def on_sample(self, sample: dict) -> None:
        with self._cond:
            self._samples.append(dict(sample))
            self._version += 1
            self._cond.notify_all()

    def finish(self, entry_key: str | None) -> None:
        self._update(state="stopped" if self.stop_event.is_set() else "finished", ended=time.time(),
                     entry_key=entry_key)

    def fail(self, error: str) -> None:
        self._update(state="failed", ended=time.time(), error=error)


class JobProgressCallback(TrainerCallback):
    """Trainer -> TrainingJob: every step (progress bar) and every log (loss, perplexity, tokens/s)."""

    def __init__(self, job: TrainingJob):
        self.job = job

    def on_train_begin(self, args, state, control, **kwargs):
        self.job.on_progress(state)

    def on_step_end(self, args, state, control, **kwargs):
        self.job.on_progress(state)

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.job.on_progress(state, logs)


class JobBoard:
    """The app's single training slot. start() refuses (returns False) while a job is active."""

    def __init__(self):
        self._lock = threading.Lock()
        self.current: TrainingJob | None = None

    def busy(self) -> bool:
        with self._lock:
            return self.current is not None and self.current.active

    def start(self, job: TrainingJob, work) -> bool:
        with self._lock:
            if self.current is not None and self.current.active:
                return False
            self.current = job
        # copy_context: the worker keeps the request's context (gr.Progress and friends find their event)
        job.thread = threading.Thread(target=contextvars.copy_context().run, args=(work, job),
                                      name=f"minigpt-train-{job.id}", daemon=True)
        job.thread.start()
        return True


SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
HUB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def sanitize_filename(name: str) -> str:
    """A bare, safe file name: no folders, no leading dots, only letters, digits, '.', '_' and '-'."""
    stem = SAFE_NAME.sub("_", Path(str(name)).name).lstrip("._") or "file"
    return stem[:80]


def _check_number(lang, name, value, rule, ok, cast=float):
    try:
        number = cast(value)
    except (TypeError, ValueError):
        raise app_error(lang, msg(lang, "bad_value", what=WHAT[lang][name], rule=rule, value=value)) from None
    if cast is int and float(value) != number:
        raise app_error(lang, msg(lang, "bad_value", what=WHAT[lang][name], rule=rule, value=value))
    if not ok(number):
        raise app_error(lang, msg(lang, "bad_value", what=WHAT[lang][name], rule=rule, value=value))
    return number


def collect_uploads(ctx, files, lang: str, job_dir: Path) -> Path:
    """Check the uploaded files (.txt, size, UTF-8 text) and join them into one corpus file in the app's own
    temp folder (names sanitized): the training never reads outside the app's folders."""
    paths = [f if isinstance(f, str) else getattr(f, "name", None) or getattr(f, "path", None) for f in files or []]
    paths = [p for p in paths if p]
    if not paths:
        raise app_error(lang, msg(lang, "need_files"))
    total = 0
    texts = []
    for raw in paths:
        source = Path(raw)
        shown = sanitize_filename(source.name)
        if source.suffix.lower() != ".txt":
            raise app_error(lang, msg(lang, "not_txt", name=shown))
        size = source.stat().st_size
        total += size
        if size > ctx.max_upload_bytes or total > ctx.max_upload_bytes:
            raise app_error(lang, msg(lang, "too_big", name=shown, size=max(size, total) / 2**20, limit=ctx.max_upload_mb))
        data = source.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise app_error(lang, msg(lang, "not_text", name=shown)) from None
        if "\x00" in text:
            raise app_error(lang, msg(lang, "not_text", name=shown))
        if not text.strip():
            raise app_error(lang, msg(lang, "empty_file", name=shown))
        texts.append(text.strip())
    job_dir.mkdir(parents=True, exist_ok=True)
    name = sanitize_filename(Path(paths[0]).name) if len(paths) == 1 else f"{len(paths)}_files.txt"
    target = job_dir / name
    target.write_text("\n\n".join(texts), encoding="utf-8")
    return target


def prepare_job(ctx, lang: str, corpus_source, files, hub_dataset, preset, tokenizer_type, vocab_size,
                length_unit, max_steps, epochs, batch_size, learning_rate, block_size, seed) -> TrainingJob:
    """Check every input (gr.Error with what to change) and build the job; nothing runs yet."""
    sources = (*BUILTIN_CORPORA, "upload", "hub")
    if corpus_source not in sources:
        raise app_error(lang, msg(lang, "bad_value", what=WHAT[lang]["corpus_source"], rule=", ".join(sources),
                           value=corpus_source))
    if preset not in APP_PRESETS:
        raise app_error(lang, msg(lang, "bad_value", what=WHAT[lang]["preset"], rule=" | ".join(APP_PRESETS), value=preset))
    if tokenizer_type not in ("bpe", "char"):
        raise app_error(lang, msg(lang, "bad_value", what=WHAT[lang]["tokenizer_type"], rule="bpe | char",
                           value=tokenizer_type))
    if length_unit not in ("steps", "epochs"):
        raise app_error(lang, msg(lang, "bad_value", what=WHAT[lang]["length_unit"], rule="steps | epochs",
                           value=length_unit))
    def between(low, high) -> str:
        return msg(lang, "between", low=low, high=high)

    vocab_size = _check_number(lang, "vocab_size", vocab_size, between(300, 32768), lambda v: 300 <= v <= 32768, int)
    if length_unit == "steps":
        steps = _check_number(lang, "max_steps", max_steps, between(1, 100000), lambda v: 1 <= v <= 100_000, int)
        epochs = 1.0
    else:
        steps = -1
        epochs = _check_number(lang, "epochs", epochs, between(0.01, 100), lambda v: 0.01 <= v <= 100)
    batch_size = _check_number(lang, "batch_size", batch_size, between(1, 512), lambda v: 1 <= v <= 512, int)
    learning_rate = _check_number(lang, "learning_rate", learning_rate, "> 0, <= 1", lambda v: 0 < v <= 1)
    block_size = _check_number(lang, "block_size", block_size, between(8, 1024), lambda v: 8 <= v <= 1024, int)
    seed = _check_number(lang, "seed", seed, ">= 0", lambda v: 0 <= v < 2**32, int)

    run_name = f"{time.strftime('%Y%m%d-%H%M%S')}-{preset}-{tokenizer_type}"
    while (ctx.runs_dir / run_name).exists():
        run_name += "x"
    job_dir = ctx.tmp_dir / "uploads" / run_name
    data = {"block_size": block_size, "preprocessing_num_workers": None}
    corpus = f"{corpus_source} (built-in)"
    if corpus_source in BUILTIN_CORPORA:
        data["builtin_corpus"] = corpus_source
    elif corpus_source == "upload":
        train_file = collect_uploads(ctx, files, lang, job_dir)
        data["train_file"] = str(train_file)
        corpus = train_file.name
    elif corpus_source == "hub":
        name = (hub_dataset or "").strip()
        if not name:
            raise app_error(lang, msg(lang, "need_hub"))
        # A Hub name only: never a path (load_dataset would read a local folder or file).
        if not HUB_NAME.match(name) or ".." in name or Path(name).exists():
            raise app_error(lang, msg(lang, "bad_hub", name=name))
        data["dataset_name"] = name
        corpus = name
    output_dir = ctx.runs_dir / run_name
    model_args = ModelArguments(preset=preset, tokenizer_type=tokenizer_type, vocab_size=vocab_size)
    data_args = DataArguments(**data)
    # Built by the worker, not here: creating TrainingArguments resets accelerate's process-wide state, which
    # must not happen while another training runs.
    training_kwargs = dict(
        output_dir=str(output_dir), max_steps=steps, num_train_epochs=epochs,
        per_device_train_batch_size=batch_size, per_device_eval_batch_size=max(32, batch_size),
        learning_rate=learning_rate, seed=seed,
        eval_steps=0.125, logging_steps=0.02,  # fractions of the run: 8 evaluations, ~50 points
        save_strategy="no",  # the app keeps the final model only (Stop saves it too)
        report_to="none", dataloader_num_workers=0,
    )
    settings = {"corpus": corpus, "preset": preset, "tokenizer": tokenizer_type, "vocab_size": vocab_size,
                "max_steps": steps, "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                "block_size": block_size, "seed": seed}
    return TrainingJob(run_name, output_dir, settings, model_args, data_args, training_kwargs,
                       cleanup=job_dir if corpus_source == "upload" else None)


def make_worker(ctx):
    def work(job: TrainingJob) -> None:
        try:
            try:
                training_args = MiniGPTTrainingArguments(**job.training_kwargs)
            except ValueError as error:  # TrainingArguments' own checks
                raise SetupError(str(error).splitlines()[0]) from None
            result = run_training(job.model_args, job.data_args, training_args,
                                  callbacks=[JobProgressCallback(job)], stop_event=job.stop_event,
                                  on_sample=job.on_sample)
            snap = job.snapshot()
            info = {**job.settings, "steps": snap.step, "stopped": job.stop_event.is_set(),
                    "eval_loss": result.metrics.get("eval_loss"), "finished_at": time.time()}
            (job.output_dir / APP_RUN_FILE).write_text(json.dumps(info, indent=2))
            entry = ctx.registry.add_run(job.output_dir)
            job.finish(entry.key)
        except (SetupError, CorpusError, HubError, ModelError) as error:
            job.fail(friendly(error))
            shutil.rmtree(job.output_dir, ignore_errors=True)
        except Exception as error:  # a bug or an exhausted machine: say so, keep the app up
            logger.error("training %s failed:\n%s", job.run_name, traceback.format_exc())
            job.fail(f"{type(error).__name__}: {friendly(error).splitlines()[0] if str(error) else ''}")
            shutil.rmtree(job.output_dir, ignore_errors=True)
        finally:
            if job.cleanup is not None:
                shutil.rmtree(job.cleanup, ignore_errors=True)

    return work


def make_zip(ctx, folder: Path) -> Path:
    """The finished model as a zip in the app's temp folder (checkpoints and temporary files left out)."""
    target = ctx.tmp_dir / "zips" / f"{folder.name}.zip"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{uuid.uuid4().hex[:6]}.part")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder)
            if (path.is_dir() or path.is_symlink() or relative.parts[0].startswith(("checkpoint-", ".saving"))
                    or ".tmp" in path.name):
                continue
            archive.write(path, Path(folder.name) / relative)
    partial.replace(target)
    return target
