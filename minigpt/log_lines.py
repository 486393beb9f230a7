"""The console's view of a run: one compact line per log, numbers as numbers, in place of the Trainer's printed
dicts (whose every float is a quoted string) and its nested evaluation bar (whose cursor escapes land in a
redirected log).

    step 40/300 | loss 4.512 | ppl 91.1 | lr 1.00e-03 | 5,210 tok/s | eta 0:00:52 | epoch 0.91
    step 40/300 | eval loss 4.460 | eval ppl 86.5 | 0.4 s

With --disable_tqdm the lines go through the "minigpt" logger (so --log_level error hides them); with a progress
bar they are written above it. The ETA appears only once speed is measured: the first interval after training
starts (or resumes) holds the warm-up (allocation, compilation, the first batches) and would predict hours.
"""

import datetime
import logging

from transformers import PrinterCallback, ProgressCallback

logger = logging.getLogger("minigpt")


def log_line(logs: dict, step: int, max_steps: int, eta_seconds: float | None = None) -> str | None:
    """The line for one Trainer log entry (None for one with nothing to show)."""
    where = f"step {step}/{max_steps}" if max_steps > 0 else f"step {step}"
    if "loss" in logs:
        parts = [f"loss {logs['loss']:.4f}", f"ppl {logs.get('perplexity', float('nan')):.1f}"]
        if "learning_rate" in logs:
            parts.append(f"lr {logs['learning_rate']:.2e}")
        if "tokens_per_second" in logs:
            parts.append(f"{logs['tokens_per_second']:,.0f} tok/s")
        if "mfu" in logs:
            parts.append(f"mfu {100 * logs['mfu']:.1f}%")
        if eta_seconds is not None:
            parts.append(f"eta {datetime.timedelta(seconds=round(eta_seconds))}")
    elif "eval_loss" in logs:
        parts = [f"eval loss {logs['eval_loss']:.4f}", f"eval ppl {logs.get('eval_perplexity', float('nan')):.1f}"]
        if "eval_runtime" in logs:
            parts.append(f"{logs['eval_runtime']:.1f} s")
    elif "train_runtime" in logs:
        parts = [f"trained in {datetime.timedelta(seconds=round(logs['train_runtime']))}"]
        if "train_loss" in logs:
            parts.append(f"mean train loss {logs['train_loss']:.4f}")
    else:
        return None
    if "epoch" in logs and "eval_loss" not in logs:
        parts.append(f"epoch {logs['epoch']:.2f}")
    return " | ".join([where, *parts])


class _LineMaker:
    """Counts the measured speeds since training began (again, on a resume): the ETA waits for the second."""

    def __init__(self):
        self.speeds = 0

    def start(self):
        self.speeds = 0

    def line(self, logs: dict, state) -> str | None:
        eta = None
        if "tokens_per_second" in logs and state.global_step > 0:
            self.speeds += 1
            if self.speeds >= 2 and state.max_steps > 0 and logs["tokens_per_second"] > 0:
                tokens_per_step = logs.get("tokens_seen", 0) / state.global_step
                eta = (state.max_steps - state.global_step) * tokens_per_step / logs["tokens_per_second"]
        return log_line(logs, state.global_step, state.max_steps, eta)


class LogLineCallback(PrinterCallback):
    """The Trainer's printer (--disable_tqdm), printing one compact line through the "minigpt" logger."""

    def __init__(self):
        self.lines = _LineMaker()

    def on_train_begin(self, args, state, control, **kwargs):
        self.lines.start()

    def on_log(self, args, state, control, logs=None, **kwargs):
        line = self.lines.line(logs or {}, state)
        if state.is_world_process_zero and line:
            logger.info(line)


class TrainingBarCallback(ProgressCallback):
    """The Trainer's progress bar for training, without the nested evaluation bar, with compact lines above it."""

    def __init__(self):
        super().__init__()
        self.lines = _LineMaker()

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        self.lines.start()

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        pass  # no second bar: evaluation is seconds, and its line follows

    def on_log(self, args, state, control, logs=None, **kwargs):
        line = self.lines.line(logs or {}, state)
        if not (state.is_world_process_zero and line and logger.isEnabledFor(logging.INFO)):
            return
        if self.training_bar is not None:
            self.training_bar.write(line)
        else:
            logger.info(line)


def close_training_bar(trainer) -> None:
    """End the training bar of a run that stopped with an error (the Trainer closes it only at the end)."""
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, ProgressCallback) and callback.training_bar is not None:
            callback.training_bar.close()
            callback.training_bar = None


class _SameSecondCheckpoints(logging.Filter):
    """Drops transformers' "mtime may not be reliable on this filesystem" warning. The Trainer orders checkpoints by
    modification time when it rotates them and, when they were written within one second (a small model saves
    that fast on any disk), orders them by step instead: what a run wants. The warning asks nothing of the user."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "mtime may not be reliable" not in record.getMessage()


logging.getLogger("transformers.trainer_utils").addFilter(_SameSecondCheckpoints())
