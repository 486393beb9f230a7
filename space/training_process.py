"""A training in its own process: the same minigpt.training.run_training as train.py, started from a fork server
(torch and transformers imported once, then a clean process per run; space/lifeline.py), so that an out-of-memory
kill or a crash in a library ends that run only and the web server stays up. The process dies with the app.

Parent and child speak over one multiprocessing queue (child -> parent) and one event (parent -> child: stop):
    ("data", {stage, done_mb, total_mb, ...})      while preparing the data: a minigpt.data_progress.DataProgress
    ("progress", {step, max_steps, epoch, logs})   every step and every log of the Trainer
    ("sample", {...})                              each evaluation's sample text
    ("done", {eval_loss, peak_rss})                the model is saved in output_dir; the child's peak RSS
    ("error", "kind", "one line")                  kind: setup (bad input, said in one line) | crash
A child that dies without "done" or "error" (killed by the kernel's OOM killer, a segfault) is a failed run.

This module imports no gradio: the child loads only the training pipeline.
"""

import gc
import logging
import os
import resource
import traceback
from dataclasses import asdict
from pathlib import Path

from transformers import TrainerCallback

from minigpt.time_plan import STEPS_UPPER_BOUND
from space.lifeline import die_with_parent, exit_when_gone

logger = logging.getLogger("minigpt.app")

OWNER_TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


class QueueProgressCallback(TrainerCallback):
    """Trainer -> parent: every step (progress bar, tokens seen) and every log (loss, perplexity, tokens/s)."""

    def __init__(self, events, tokens_per_step: int):
        self.events = events
        self.tokens_per_step = tokens_per_step

    def _send(self, state, logs=None):
        # a run in minutes: its steps are known once planned (after its first steps), not the Trainer's bound
        max_steps = None if state.max_steps >= STEPS_UPPER_BOUND else state.max_steps
        self.events.put(("progress", {"step": state.global_step, "max_steps": max_steps,
                                      "epoch": float(state.epoch or 0.0), "logs": dict(logs or {}),
                                      "tokens_seen": state.global_step * self.tokens_per_step}))

    def on_train_begin(self, args, state, control, **kwargs):
        self._send(state)

    def on_step_end(self, args, state, control, **kwargs):
        self._send(state)

    def on_log(self, args, state, control, logs=None, **kwargs):
        self._send(state, logs)


def hide_owner_token() -> None:
    """A hosted Space: the owner's token never serves a visitor's corpus (huggingface_hub would fall back to it)."""
    import huggingface_hub

    for name in OWNER_TOKEN_VARIABLES:
        os.environ.pop(name, None)
    os.environ["HF_HUB_DISABLE_IMPLICIT_TOKEN"] = "1"
    huggingface_hub.constants.HF_HUB_DISABLE_IMPLICIT_TOKEN = True  # read at import, in the fork server


def train_in_child(arguments, events, stop, private_cache: str | None, on_space: bool, app_pid: int,
                   started_at: float | None = None) -> None:
    """The child's whole life: make the run's TrainingArguments (minigpt.arguments.RunArguments), run the
    pipeline, report. Never raises. started_at: when the job started (a budget in minutes counts from there)."""
    die_with_parent()
    exit_when_gone(app_pid)
    logging.basicConfig(format="%(asctime)s %(name)s %(message)s", level=logging.INFO)
    if on_space:
        hide_owner_token()
    import datasets

    from minigpt.corpus import CorpusError
    from minigpt.errors import SetupError
    from minigpt.hub import HubError
    from minigpt.monitoring import tokens_per_step
    from minigpt.training import run_training

    # This process trains once and exits, so what it was forked with (the fork server's imports) is never garbage:
    # frozen, it is left out of the gc.collect() the Trainer runs when training starts (~0.3 s a run).
    gc.freeze()
    if private_cache:  # an uploaded text: its Arrow and token caches live (and die) with the run's upload folder
        datasets.config.HF_DATASETS_CACHE = Path(private_cache)
    try:
        try:
            training_args = arguments.training_arguments()
        except ValueError as error:  # TrainingArguments' own checks
            raise SetupError(str(error).splitlines()[0]) from None
        reporter = QueueProgressCallback(events, tokens_per_step(training_args, arguments.data.block_size))
        result = run_training(arguments.model, arguments.data, training_args, callbacks=[reporter],
                              stop_event=stop, on_sample=lambda sample: events.put(("sample", dict(sample))),
                              on_data_progress=lambda progress: events.put(("data", asdict(progress))),
                              started_at=started_at)
        events.put(("done", {"eval_loss": result.metrics.get("eval_loss"),
                             "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
    except (SetupError, CorpusError, HubError) as error:
        events.put(("error", "setup", str(error)))
    except BaseException as error:  # a bug or an exhausted machine: reported, the parent stays up
        logger.error("training failed:\n%s", traceback.format_exc())
        text = str(error).splitlines()[0] if str(error) else ""
        events.put(("error", "crash", f"{type(error).__name__}: {text}".rstrip(": ")))
    finally:
        events.close()
        events.join_thread()  # everything sent reaches the parent before the process ends
