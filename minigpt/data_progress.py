"""Progress of the data work (reading a corpus, training the tokenizer, tokenizing) in MB and MB/s: a tqdm bar on
the console, and a hook that any caller (the app's status line) can pass to the pipeline."""

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import datasets
import pyarrow.compute as pc
from tqdm.auto import tqdm

logger = logging.getLogger("minigpt")

MB = 1e6


@dataclass(frozen=True)
class DataProgress:
    stage: str  # "reading the corpus", "training the tokenizer", "tokenizing train", ...
    done_mb: float
    total_mb: float | None  # None when unknown (a stream)
    mb_per_s: float
    finished: bool = False


ProgressHook = Callable[[DataProgress], None]


class ProgressMeter:
    """Count bytes through one stage; show them (unless `show` is False) and pass them to `hook` at most twice a
    second, and once more at the end. The end is also logged as one line: "<stage>: 104.9 MB in 20.1 s (5.2 MB/s)"."""

    def __init__(self, stage: str, total_bytes: int | None = None, *, show: bool = True,
                 hook: ProgressHook | None = None):
        self.stage, self.hook = stage, hook
        self.total_mb = total_bytes / MB if total_bytes is not None else None
        self.done = 0
        self.start = self.last_report = time.monotonic()
        shape = "{percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} MB [{elapsed}<{remaining}" if self.total_mb else \
            "{n:.1f} MB [{elapsed}"
        self.bar = tqdm(total=self.total_mb, desc=stage.capitalize(), unit="MB", disable=not show,
                        bar_format="{desc}: " + shape + ", {rate_fmt}]")

    def update(self, n_bytes: int) -> None:
        self.done += n_bytes
        if self.bar.total is not None and self.done / MB > self.bar.total:  # a sample's last row goes past its MB
            self.bar.total = self.done / MB
        self.bar.update(n_bytes / MB)
        now = time.monotonic()
        if self.hook is not None and now - self.last_report >= 0.5:
            self.last_report = now
            self.hook(self._progress(now, finished=False))

    def _progress(self, now: float, finished: bool) -> DataProgress:
        done_mb = self.done / MB
        return DataProgress(self.stage, done_mb, self.total_mb, done_mb / max(now - self.start, 1e-9), finished)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        self.bar.close()
        if exc_type is not None:
            return
        progress = self._progress(time.monotonic(), finished=True)
        logger.info("%s: %.1f MB in %.1f s (%.1f MB/s)", self.stage.capitalize(), progress.done_mb,
                    time.monotonic() - self.start, progress.mb_per_s)
        if self.hook is not None:
            self.hook(progress)


def text_bytes(dataset) -> int:
    """UTF-8 bytes in the "text" column of a map-style Dataset, read from the Arrow offsets alone: the text itself
    stays on disk. (`_indices`: the rows a select() kept, which datasets has no public accessor for.)"""
    lengths = pc.binary_length(dataset.data.column("text"))
    if dataset._indices is not None:
        lengths = pc.take(lengths, dataset._indices.column("indices"))
    return pc.sum(lengths).as_py() or 0


@contextlib.contextmanager
def datasets_progress_bars_off():
    """datasets' own progress bars off for a while (--disable_tqdm, or one MB/s bar in their place)."""
    were_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not were_disabled:
            datasets.enable_progress_bars()
