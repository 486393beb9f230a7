"""One run, many processes (`torchrun`, `accelerate launch`, one or many machines): the main process (global
rank 0) decides and prepares, the other ranks follow.

- `choose_backend`: the TrainingArguments see the launch. accelerate picks NCCL on GPUs by itself; on a machine
  without one it would initialise a process group yet leave every process a run of its own (each rank 0 of 1),
  so there the run goes to the CPU with gloo.
- `main_first`: a step run by the main process first (it owns the output folder, downloads, trains the tokenizer,
  fills the caches), then by the other ranks, which read what it cached, or which receive its result. An error
  stops every rank together: the rank that failed raises its own error, the others `FailedElsewhere`, which
  train.py ends without a word, so a refusal is one line, printed once, and no rank hangs in a barrier.
- `stop_together`: such an error ends every rank only once the failing one has said why (launchers stop all
  processes at the first exit).
"""

import contextlib
import os
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


class FailedElsewhere(Exception):
    """Another process of this run failed, and said why: this one stops quietly."""


def _launched_distributed() -> bool:
    """Started by torchrun or accelerate launch: they set these variables (accelerate reads them the same way)."""
    return int(os.environ.get("LOCAL_RANK", -1)) != -1 or int(os.environ.get("WORLD_SIZE", 1)) > 1


def choose_backend(args) -> None:
    """gloo on the CPU under a distributed launch, before TrainingArguments set up their devices (on a GPU,
    accelerate's NCCL). An Apple GPU counts as none: accelerate has no multi-process MPS."""
    if not _launched_distributed():
        return
    accelerator = torch.accelerator.current_accelerator()
    if accelerator is None or accelerator.type == "mps":
        args.use_cpu = True
        args.ddp_backend = args.ddp_backend or "gloo"


def main_first(args, work: Callable[[], T], *, share: bool = False) -> T:
    """work() on the main process, then on every other rank (which then read what the main process cached), or,
    with `share`, the main process's result handed to the others (which do not run work). Single-process runs
    just call work()."""
    if args.world_size == 1:
        return work()
    main = args.process_index == 0
    result, error = _attempt(work) if main else (None, None)
    box = [(error is not None, result if share else None)]
    dist.broadcast_object_list(box, src=0)
    main_failed, shared = box[0]
    if main_failed:
        raise _known_everywhere(error if main else FailedElsewhere())
    if share:
        return result if main else shared
    if not main:
        result, error = _attempt(work)
    failed = [None] * args.world_size
    dist.all_gather_object(failed, error is not None)
    if error is not None:
        raise _known_everywhere(error)
    if any(failed):
        raise _known_everywhere(FailedElsewhere())
    return result


def stop_together(error: Exception) -> None:
    """After the failing rank has reported `error`: where every rank stops on it (it came out of main_first), wait
    for all of them, since a launcher stops the other processes as soon as one exits, which could cut the failing
    rank off before it said why. A rank that crashed instead ends the wait with an error of its own, ignored."""
    if getattr(error, "stops_every_rank", False) and dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.barrier()


def _known_everywhere(error: Exception) -> Exception:
    error.stops_every_rank = True
    return error


def _attempt(work: Callable[[], T]) -> tuple[T | None, Exception | None]:
    try:
        return work(), None
    except Exception as error:  # handed on: raised on this rank once every rank knows
        return None, error
