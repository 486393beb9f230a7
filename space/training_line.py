"""The app's one training at a time, and the line of visitors waiting for it.

One job runs (in its own process, space/jobs.py); the next ones wait in order, each knowing its place and an
estimated start. A visitor (space/visitors.py) has at most one job queued or running, a network address at most
`max_per_client`; a waiting job whose visitor has not looked at it for LEAVE_AFTER_SECONDS (their page is closed,
a script that never reads /training_status) loses its place; the line has a maximum length. Nothing here waits for
a training: the visitors' pages and /training_status read the jobs.
"""

import logging
import threading
import time

from space.jobs import TrainingJob

logger = logging.getLogger("minigpt.app")

LEAVE_AFTER_SECONDS = 180  # a page polls every second; a hidden browser tab may be slowed to once a minute


class LineFull(Exception):
    """The line is at its maximum length."""


class AlreadyInLine(Exception):
    """This visitor already has a training queued or running."""


class ClientBusy(Exception):
    """This network address already has its share of trainings queued or running."""


class TrainingLine:
    """`run(job)` is called in a thread of its own for each job, one after the other."""

    def __init__(self, run, max_waiting: int, max_seconds: float, max_per_client: int):
        self._run = run
        self.max_waiting = max_waiting
        self.max_per_client = max_per_client
        self.max_seconds = max_seconds
        self._lock = threading.Lock()
        self.current: TrainingJob | None = None
        self._waiting: list[TrainingJob] = []
        self._last: dict[str, TrainingJob] = {}  # owner -> their newest job
        self._seconds_per_step: float | None = None  # measured on the last finished run
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- visitors ---------------------------------------------------------------------------------------------

    def submit(self, job: TrainingJob) -> None:
        """Put `job` in line (it starts at once when nobody trains). Raises AlreadyInLine, ClientBusy or LineFull."""
        self._drop_absent()
        with self._lock:
            mine = self._last.get(job.owner)
            if mine is not None and mine.active:
                raise AlreadyInLine
            if sum(other.client == job.client for other in self._active()) >= self.max_per_client:
                raise ClientBusy
            if self.current is not None and self.current.active and len(self._waiting) >= self.max_waiting:
                raise LineFull
            self._last[job.owner] = job
            self._waiting.append(job)
        self._advance()

    def leave(self, job: TrainingJob) -> bool:
        """A queued job leaves the line (its visitor went away); True if it was waiting."""
        with self._lock:
            if job not in self._waiting:
                return False
            self._waiting.remove(job)
        job.fail("left")
        self._place_everyone()
        return True

    def job_of(self, owner: str) -> TrainingJob | None:
        """The visitor's newest job (queued, running or done), or None."""
        with self._lock:
            return self._last.get(owner)

    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)

    def active(self) -> list[TrainingJob]:
        """The jobs queued or running."""
        with self._lock:
            return self._active()

    def _active(self) -> list[TrainingJob]:
        running = [self.current] if self.current is not None and self.current.active else []
        return running + self._waiting

    def _drop_absent(self) -> None:
        with self._lock:
            absent = [job for job in self._waiting if time.monotonic() - job.last_seen > LEAVE_AFTER_SECONDS]
        for job in absent:
            logger.info("training %s left the line: its visitor is gone", job.run_name)
            self.leave(job)

    # -- the line moves ---------------------------------------------------------------------------------------

    def _estimate(self, job: TrainingJob) -> float:
        """Seconds `job` will take: its minutes, or its steps at the last run's pace; never over the wall-time
        budget."""
        if job.arguments.training.get("max_minutes"):
            return min(self.max_seconds, 60 * job.arguments.training["max_minutes"])
        steps = job.arguments.training["max_steps"]
        if self._seconds_per_step is None or steps <= 0:
            return self.max_seconds
        return min(self.max_seconds, steps * self._seconds_per_step * job.cost)

    def _place_everyone(self) -> None:
        with self._lock:
            ahead = 0.0
            if self.current is not None and self.current.active:
                snap = self.current.snapshot()
                budget_left = max(0.0, self.max_seconds - (time.time() - snap.started))
                ahead = min(snap.remaining_seconds() or self._estimate(self.current), budget_left)
            places = []
            for position, job in enumerate(self._waiting, start=1):
                places.append((job, position, ahead))
                ahead += self._estimate(job)
        for job, position, wait in places:
            job.set_place(position, round(wait))

    def _advance(self) -> None:
        self._drop_absent()
        with self._lock:
            if self._closed or (self.current is not None and self.current.active):
                start = None
            elif self._waiting:
                start = self.current = self._waiting.pop(0)
            else:
                start = None
            if start is not None:
                start.begin()  # its time budget counts from here
                self._thread = threading.Thread(target=self._work, args=(start,), name=f"minigpt-line-{start.id}",
                                                daemon=True)
                self._thread.start()
        self._place_everyone()

    def _work(self, job: TrainingJob) -> None:
        try:
            self._run(job)
        except Exception as error:  # the runner reports its own failures; this is a last guard
            logger.exception("training %s: runner failed", job.run_name)
            if job.active:
                job.fail(f"{type(error).__name__}: {error}")
        snap = job.snapshot()
        if snap.step > 0 and snap.ended and snap.state in ("finished", "stopped"):
            self._seconds_per_step = (snap.ended - snap.started) / snap.step / job.cost
        self._advance()

    def tick(self) -> None:
        """Drop the waiting jobs whose visitors are gone, refresh the others' estimates (the running job's pace
        changes)."""
        self._drop_absent()
        self._place_everyone()

    def close(self, timeout: float = 60) -> None:
        """Shutdown: nobody else starts, the waiting jobs fail, the running one stops (its model is saved)."""
        with self._lock:
            self._closed = True
            waiting, self._waiting = self._waiting, []
            current, thread = self.current, self._thread
        for job in waiting:
            job.fail("shutdown")
        if current is not None and current.active:
            current.request_stop()
        if thread is not None:
            thread.join(timeout=timeout)
