"""A visitor's training: the job (its settings, owner and progress, watched by any number of viewers) and the
thread that runs it in its own process (space/training_process.py) and turns the child's messages into progress.
A job's settings are one minigpt.arguments.RunArguments; what its panel shows of them is derived from it.
"""

import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import psutil

from minigpt.arguments import RunArguments
from minigpt.monitoring import perplexity
from minigpt.run_folder import remove_run_folder
from space.training_process import train_in_child

logger = logging.getLogger("minigpt.app")

MARK_SUFFIX = ".app-training"  # `.<run>.app-training` beside a run folder while its training is under way


def running_mark(output_dir: Path) -> Path:
    return output_dir.parent / f".{output_dir.name}{MARK_SUFFIX}"




STOP_GRACE_SECONDS = 120  # a child that has not ended this long after Stop is ended by force
PACE_STEPS = 3  # steps timed before a job tells how long it has left: the first ones include warming up


@dataclass
class JobSnapshot:
    id: str
    version: int
    state: str  # queued | starting | running | stopping | finished | stopped | failed
    run_name: str
    owner: str
    settings: dict  # what the visitor chose (shown_settings)
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
    position: int | None = None  # in the line while queued: 1 = next
    wait_seconds: float | None = None  # estimated wait before it starts, while queued
    peak_rss: int = 0  # bytes, the training process's largest resident set seen
    note: str | None = None  # e.g. "time_budget": the run was stopped at the wall-time budget
    data_progress: dict | None = None  # the data work's last report: minigpt.data_progress.DataProgress's fields
    pace_from: tuple | None = None  # (time, step) of the first step trained after the data and model were ready

    @property
    def done(self) -> bool:
        return self.state in ("finished", "stopped", "failed")

    def remaining_seconds(self) -> float | None:
        """Time left to this running job's end, from its pace over the steps trained so far (preparing the data
        not counted); None until PACE_STEPS steps are timed."""
        if self.done or not self.max_steps or self.max_steps <= 0 or self.pace_from is None:
            return None
        since, first_step = self.pace_from
        timed = self.step - first_step
        if timed < PACE_STEPS:
            return None
        return (time.time() - since) / timed * (self.max_steps - self.step)

    def public(self) -> "JobSnapshot":
        """What every other visitor sees: that it runs, its progress and end; not its corpus, samples or run."""
        return replace(self, run_name="", owner="", settings={**self.settings, "corpus": "…"}, samples=[], error=None,
                       entry_key=None)


def shown_settings(arguments: RunArguments, corpus: str) -> dict:
    """What a visitor chose, by the settings' own names: the training panel's line and /training_status show it
    (nothing of the corpus but `corpus`, the name shown for it)."""
    training = arguments.training
    return {"corpus": corpus, "preset": arguments.model.preset, "tokenizer_type": arguments.model.tokenizer_type,
            "vocab_size": arguments.model.vocab_size, "block_size": arguments.data.block_size,
            **{name: training.get(name) for name in ("max_steps", "num_train_epochs", "max_minutes",
                                                     "per_device_train_batch_size", "learning_rate", "seed")}}


class TrainingJob:
    """One training run. The runner thread writes its progress here under a lock; any number of viewers (every
    visitor's timer, /training_status) read snapshots of it."""

    def __init__(self, run_name: str, owner: str, arguments: RunArguments, corpus: str, cost: float = 1.0,
                 cleanup: Path | None = None, private_corpus: bool = False, client: str = "local"):
        self.id = uuid.uuid4().hex[:12]
        self.run_name = run_name
        self.arguments = arguments
        self.output_dir = Path(arguments.training["output_dir"])
        self.owner = owner
        self.client = client  # the network address it came from (space/visitors.py)
        self.last_seen = time.monotonic()  # when its visitor last looked at it (their page's timer, a status call)
        self.corpus = corpus  # the name its owner sees for the corpus (an upload's own file name)
        self.settings = shown_settings(arguments, corpus)
        self.cost = cost  # parameters x tokens per step: the line's unit for estimating waits
        self.cleanup = cleanup
        self.private_corpus = private_corpus
        self.stop_event = threading.Event()
        self._cond = threading.Condition()
        self._fields = dict(version=0, state="queued", started=time.time(), ended=None, step=0, max_steps=None,
                            epoch=0.0, tokens_seen=0, tokens_per_second=None, points=[], samples=[], error=None,
                            entry_key=None, stop_requested_at=None, position=None, wait_seconds=None, peak_rss=0,
                            note=None, data_progress=None, pace_from=None)

    def _update(self, **changes) -> None:
        with self._cond:
            self._fields.update(changes)
            self._fields["version"] += 1
            self._cond.notify_all()

    def snapshot(self) -> JobSnapshot:
        with self._cond:
            f = self._fields
            return JobSnapshot(id=self.id, run_name=self.run_name, owner=self.owner, settings=dict(self.settings),
                               **{**f, "points": list(f["points"]), "samples": list(f["samples"])})

    def seen(self) -> None:
        self.last_seen = time.monotonic()

    @property
    def state(self) -> str:
        with self._cond:
            return self._fields["state"]

    @property
    def active(self) -> bool:
        return self.state in ("queued", "starting", "running", "stopping")

    def request_stop(self, note: str | None = None) -> None:
        with self._cond:
            self.stop_event.set()
            if self._fields["state"] in ("starting", "running"):
                self._fields.update(stop_requested_at=self._fields["step"], state="stopping")
                if note:
                    self._fields["note"] = note
                self._fields["version"] += 1
                self._cond.notify_all()

    def set_place(self, position: int | None, wait_seconds: float | None) -> None:
        with self._cond:
            if (self._fields["position"], self._fields["wait_seconds"]) == (position, wait_seconds):
                return
        self._update(position=position, wait_seconds=wait_seconds)

    def begin(self) -> None:
        self._update(state="starting", started=time.time(), position=None, wait_seconds=None)

    def on_progress(self, step: int, max_steps: int | None, epoch: float, logs: dict, tokens_seen: int) -> None:
        with self._cond:
            f = self._fields
            if f["state"] == "starting":
                f["state"] = "stopping" if self.stop_event.is_set() else "running"
            if f["pace_from"] is None and step > f["step"]:  # the first step trained: the clock of the pace starts
                f["pace_from"] = (time.time(), step)
            f.update(step=step, max_steps=max_steps, epoch=epoch, tokens_seen=int(tokens_seen))
            if "tokens_per_second" in logs:
                f["tokens_per_second"] = float(logs["tokens_per_second"])
            for key, curve in (("loss", "train"), ("eval_loss", "validation")):
                if key in logs and not any(p["curve"] == curve and p["step"] == step for p in f["points"]):
                    f["points"].append({"step": step, "tokens_seen": f["tokens_seen"], "curve": curve,
                                        "loss": float(logs[key]), "perplexity": perplexity(float(logs[key]))})
            f["version"] += 1
            self._cond.notify_all()

    def on_data_progress(self, progress: dict) -> None:
        """The data work's progress (a DataProgress as a dict); the panel shows it while the job is starting."""
        self._update(data_progress=dict(progress))

    def on_sample(self, sample: dict) -> None:
        with self._cond:
            self._fields["samples"].append(dict(sample))
            self._fields["version"] += 1
            self._cond.notify_all()

    def note_rss(self, rss: int) -> None:
        with self._cond:
            if rss > self._fields["peak_rss"]:
                self._fields["peak_rss"] = rss  # no new version: nobody needs a redraw for this

    def finish(self, entry_key: str | None) -> None:
        self._update(state="stopped" if self.stop_event.is_set() else "finished", ended=time.time(),
                     entry_key=entry_key)

    def fail(self, error: str) -> None:
        self._update(state="failed", ended=time.time(), error=error)


PLANNED_SLACK = 1.1  # a run in minutes plans to end within its budget: stopped only when it is this much over


def run_in_process(job: TrainingJob, context, max_seconds: float, on_space: bool) -> dict:
    """Run `job` in a child process of `context` (space/lifeline.py) and follow it until it ends: progress and
    samples into the job, Stop and the wall-time budget to the child. The budget counts from the job's start
    (TrainingJob.begin, when the line starts it), preparing the data included: a child still preparing when the
    budget ends, or when Stop is pressed, is ended at once (the pipeline looks at Stop between training steps
    only). A run in minutes (max_minutes, at most the budget) plans its steps to end in time from the same start,
    its learning rate decayed: the budget stops it only if it overruns. Returns the child's last word:
    {"done": {...}} or {"error": (kind, text)}; kind: setup | crash | killed
    | time_budget | stopped. Never raises for what happens in the child."""
    events, stop = context.Queue(), context.Event()
    private_cache = str(job.cleanup / "datasets_cache") if job.private_corpus and job.cleanup else None
    job.output_dir.parent.mkdir(parents=True, exist_ok=True)
    running_mark(job.output_dir).touch()
    started = job.snapshot().started
    planned = job.arguments.training.get("max_minutes") is not None  # the child plans its steps to end in time
    child = context.Process(target=train_in_child, name=f"minigpt-train-{job.id}", daemon=True,
                            args=(job.arguments, events, stop, private_cache, on_space, os.getpid(), started))
    child.start()
    watched = psutil.Process(child.pid)
    last_word, stop_sent_at, training = None, None, False
    try:
        while last_word is None:
            try:
                kind, *payload = events.get(timeout=0.5)
            except Exception:  # queue.Empty: look at the child and the clocks
                kind = None
            if kind == "progress":
                training = True
                job.on_progress(**payload[0])
            elif kind == "sample":
                job.on_sample(payload[0])
            elif kind == "data":
                job.on_data_progress(payload[0])
            elif kind == "done":
                last_word = {"done": payload[0]}
                job.note_rss(payload[0].get("peak_rss", 0))  # the kernel's count; the polling below may miss it
            elif kind == "error":
                last_word = {"error": tuple(payload)}
            elif not child.is_alive():
                last_word = {"error": ("killed", str(child.exitcode))}
            try:
                job.note_rss(watched.memory_info().rss)
            except psutil.Error:
                pass
            if last_word is not None:
                break
            over_budget = time.time() - started > max_seconds * (PLANNED_SLACK if planned else 1)
            if not training and (over_budget or job.stop_event.is_set()):
                child.kill()
                last_word = {"error": ("time_budget" if over_budget else "stopped", "")}
                break
            if over_budget and not job.stop_event.is_set():
                job.request_stop(note="time_budget")
            if job.stop_event.is_set() and stop_sent_at is None:
                stop.set()
                stop_sent_at = time.time()
            if stop_sent_at is not None and time.time() - stop_sent_at > STOP_GRACE_SECONDS and child.is_alive():
                child.kill()
    finally:
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
            child.join(timeout=10)
        events.close()
        events.cancel_join_thread()
    return last_word


def discard(output_dir: Path) -> None:
    """A run that failed or is pruned: its folder, what the pipeline keeps beside it (minigpt.run_folder) and the
    app's mark go."""
    remove_run_folder(output_dir)
    running_mark(output_dir).unlink(missing_ok=True)
