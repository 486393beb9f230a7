"""What a learner watches while MiniGPT trains: loss and perplexity, tokens seen, speed, samples, overfitting.

Everything hangs off transformers' Trainer: a Trainer subclass enriches each log entry, and callbacks write the
loss history and plot, print sample text at every evaluation, warn about overfitting and stop on request.
The CLI and the app use the same pieces. Nothing here writes into the output folder while training runs: the
history, plot and samples are written with the finished model (see minigpt.run_folder).
"""

import csv
import logging
import math
import threading
import time
from pathlib import Path

import torch
from torch.optim.lr_scheduler import LambdaLR
from transformers import PrinterCallback, ProgressCallback, SchedulerType, Trainer, TrainerCallback, get_scheduler

from minigpt.errors import Diverged
from minigpt.log_lines import LogLineCallback, TrainingBarCallback
from minigpt.number_format import fmt
from minigpt.schedules import check_schedule, scheduler_kwargs
from minigpt.teaching import default_sampling, describe_sampling
from minigpt.throughput import mfu
from minigpt.time_plan import TimePlan, TimePlanCallback

logger = logging.getLogger("minigpt")

HISTORY_FILE = "loss_history.csv"
PLOT_FILE = "loss_plot.png"
SAMPLES_FILE = "samples.md"


def perplexity(loss: float) -> float:
    """exp(cross entropy): the number of equally likely tokens the model is 'choosing between'."""
    return math.exp(loss) if loss < 700 else float("inf")


def tokens_per_step(args, block_size: int) -> int:
    """Tokens one optimizer step trains on, all processes together (TrainingArguments `args`)."""
    return args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size * block_size


class MiniGPTTrainer(Trainer):
    """The HF Trainer, whose log entries also carry perplexity, tokens seen, tokens/s and MFU. Tokens count every
    process of a data-parallel run; MFU is per device (a process's share of the tokens against its device's peak).

    Adding them in `log` (not in a callback) puts them in `state.log_history`: they are printed, saved in
    every checkpoint's trainer_state.json and survive a resume.
    """

    def __init__(self, *args, block_size: int, peak_flops: float | None = None, deadline: float | None = None,
                 **kwargs):
        """deadline: with args.max_minutes, when (time.time()) the budget ends: the steps are planned to fit."""
        super().__init__(*args, **kwargs)
        # the console: compact lines in place of the printed dicts, no nested evaluation bar (minigpt.log_lines)
        if self.pop_callback(PrinterCallback):
            self.add_callback(LogLineCallback())
        elif self.pop_callback(ProgressCallback):  # (a notebook's progress callback is not one: it stays)
            self.add_callback(TrainingBarCallback())
        self.block_size = block_size
        self.peak_flops = peak_flops
        self.clock = TrainingClock()
        self.add_callback(self.clock)
        self.scheduler_kwargs = self.args.lr_scheduler_kwargs  # what the scheduler was made with (the model card)
        self.time_plan = None
        if self.args.max_minutes is not None:
            budget = 60 * self.args.max_minutes
            self.time_plan = TimePlan(self.args.warmup_steps, self.args.decay_fraction,
                                      (self.args.lr_scheduler_kwargs or {}).get("decay_type", "cosine"))
            weights = sum(p.numel() * p.element_size() for p in self.model.parameters())
            self.add_callback(TimePlanCallback(
                self.time_plan, time.time() + budget if deadline is None else deadline, budget, self.clock,
                self.tokens_per_step, eval_tokens=len(self.eval_dataset) * block_size if self.eval_dataset else 0,
                checkpoint_bytes=3 * weights, score_after=self.args.do_eval, on_plan=self._show_planned_steps))

    @property
    def tokens_per_step(self) -> int:
        return tokens_per_step(self.args, self.block_size)

    def training_step(self, *args, **kwargs):
        """The Trainer's step, stopped at a loss that is not finite: the weights it would update are lost (see
        DivergenceCallback). The check reads the loss on the host, as the Trainer's own logging_nan_inf_filter
        does at every step."""
        loss = super().training_step(*args, **kwargs)
        if not torch.isfinite(loss).all():
            raise Diverged(self.state.global_step + 1, loss.float().mean().item())
        return loss

    def evaluate(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return super().evaluate(*args, **kwargs)
        finally:
            self.clock.last_eval_seconds = time.perf_counter() - start
            self.clock.eval_seconds += self.clock.last_eval_seconds

    def log(self, logs: dict, start_time: float | None = None) -> None:
        # the tokens the batches held (the Trainer counts them, include_num_input_tokens_seen): a short last batch
        # of an epoch counts what it holds
        logs["tokens_seen"] = self.state.num_input_tokens_seen
        if "loss" in logs:
            logs["perplexity"] = round(perplexity(logs["loss"]), 3)
            seconds, tokens = self.clock.lap(self.state.num_input_tokens_seen)
            if tokens > 0 and seconds > 0:
                logs["tokens_per_second"] = round(tokens / seconds, 1)
                if self.peak_flops:
                    model = self.accelerator.unwrap_model(self.model)
                    logs["mfu"] = round(mfu(logs["tokens_per_second"] / self.args.world_size, model.config,
                                            self.block_size, self.peak_flops), 4)
        if "eval_loss" in logs:
            logs["eval_perplexity"] = round(perplexity(logs["eval_loss"]), 3)
        super().log(logs, start_time)

    def _show_planned_steps(self, steps: int) -> None:
        """The progress bar's length: the planned steps (a time-planned run)."""
        for callback in self.callback_handler.callbacks:
            if isinstance(callback, ProgressCallback) and callback.training_bar is not None:
                callback.training_bar.total = steps
                callback.training_bar.refresh()

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """warmup_stable_decay needs the length of its decay: the last `decay_fraction` of the steps, unless
        lr_scheduler_kwargs gives num_decay_steps. Computed here, where the number of steps is known, and kept in
        `scheduler_kwargs` (the arguments stay as they were given). A time-planned run (--max_minutes) follows its
        TimePlan, whose steps are laid out once training has measured its speed."""
        if self.lr_scheduler is None and self.time_plan is not None:
            self.scheduler_kwargs = None
            self.lr_scheduler = LambdaLR(optimizer or self.optimizer, self.time_plan)
        if self.lr_scheduler is None:
            check_schedule(self.args, num_training_steps)  # again: with --num_train_epochs, steps are known now
            self.scheduler_kwargs = scheduler_kwargs(self.args, num_training_steps)
            self.lr_scheduler = get_scheduler(
                self.args.lr_scheduler_type, optimizer=optimizer or self.optimizer,
                num_warmup_steps=self.args.get_warmup_steps(num_training_steps), num_training_steps=num_training_steps,
                scheduler_specific_kwargs=self.scheduler_kwargs)
        return self.lr_scheduler


class TrainingClock(TrainerCallback):
    """The training time between two logs, evaluation excluded: tokens/s. It starts when training starts (again,
    on a resume), so that loading a checkpoint or preparing the data is not counted."""

    def __init__(self):
        self.start: tuple[float, int] | None = None  # (time, tokens seen) of the previous lap
        self.eval_seconds = 0.0
        self.last_eval_seconds = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.start, self.eval_seconds = (time.perf_counter(), state.num_input_tokens_seen), 0.0

    def lap(self, tokens_seen: int) -> tuple[float, int]:
        """(seconds, tokens) since the previous lap, evaluation excluded; starts the next lap."""
        now = time.perf_counter()
        if self.start is None:
            self.start = (now, tokens_seen)
            return 0.0, 0
        seconds, tokens = now - self.start[0] - self.eval_seconds, tokens_seen - self.start[1]
        self.start, self.eval_seconds = (now, tokens_seen), 0.0
        return seconds, tokens


def history_rows(log_history: list[dict]) -> list[dict]:
    """One row per logged step: step, tokens seen, train loss, eval loss, eval perplexity (blank when absent)."""
    rows: dict[int, dict] = {}
    for entry in log_history:
        if "loss" not in entry and "eval_loss" not in entry:
            continue
        row = rows.setdefault(entry["step"], {"step": entry["step"], "tokens_seen": entry.get("tokens_seen", ""),
                                              "train_loss": "", "eval_loss": "", "eval_perplexity": ""})
        if "loss" in entry:
            row["train_loss"] = entry["loss"]
        if "eval_loss" in entry and row["eval_loss"] == "":  # a second one at a step: the best model, loaded back
            row["eval_loss"] = entry["eval_loss"]
            row["eval_perplexity"] = entry.get("eval_perplexity", perplexity(entry["eval_loss"]))
    return [rows[step] for step in sorted(rows)]


def write_history(log_history: list[dict], output_dir: str) -> None:
    """loss_history.csv and loss_plot.png in output_dir (a folder being built: see minigpt.run_folder)."""
    rows = history_rows(log_history)
    if not rows:
        return
    out = Path(output_dir)
    with (out / HISTORY_FILE).open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot_losses(rows, out / PLOT_FILE)


def logged_samples(log_history: list[dict]) -> list[dict]:
    """The samples SampleTextCallback put into the log history (kept in checkpoints, so they survive a resume)."""
    return [entry["sample"] for entry in log_history if "sample" in entry]


def write_samples(samples: list[dict], output_dir: str) -> None:
    lines = ["# Samples at each evaluation\n"]
    for s in samples:
        lines.append(f"## step {s['step']} ({s['tokens_seen']:,} tokens seen), prompt {s['prompt']!r}\n")
        lines.append(f"greedy:\n\n```\n{s['prompt'] + s['greedy']}\n```\n")
        lines.append(f"sampled ({describe_sampling()}):\n\n```\n{s['prompt'] + s['sampled']}\n```\n")
    (Path(output_dir) / SAMPLES_FILE).write_text("\n".join(lines))


PLOT_WORDS = {
    "en": {"train": "train", "validation": "validation", "x": "tokens seen", "y": "cross-entropy loss (nats/token)",
           "title": "MiniGPT: train vs validation loss",
           "turn": "lowest validation loss (step {step}): overfitting after it"},
    "pt": {"train": "treino", "validation": "validação", "x": "tokens vistos",
           "y": "perda de entropia cruzada (nats/token)", "title": "MiniGPT: perda de treino e de validação",
           "turn": "menor perda de validação (passo {step}): sobreajuste depois dele"},
}


def read_history(output_dir: str) -> list[dict]:
    """The rows of a run's loss_history.csv (history_rows' numbers; "" where a value was not logged)."""
    with (Path(output_dir) / HISTORY_FILE).open(newline="") as f:
        return [{key: (float(value) if value != "" else "") for key, value in row.items()}
                for row in csv.DictReader(f)]


def overfitting_turn(evals: list[tuple[int, float]], train: list[tuple[int, float]]) -> int | None:
    """The step at which validation loss turned up while training loss kept falling: the evaluation with the
    lowest validation loss, where a later one is higher and the training loss last logged is lower than the one
    logged at or before it; None otherwise. evals, train: (step, loss) in step order; of two evaluations at one
    step, the first counts (the second is the best model evaluated again, after early stopping loaded it back)."""
    evals = list({step: loss for step, loss in reversed(evals)}.items())[::-1]
    if len(evals) < 2:
        return None
    best_step, best = min(evals, key=lambda e: e[1])
    before = [loss for step, loss in train if step <= best_step]
    after = [loss for step, loss in train if step > best_step]
    if evals[-1][1] <= best or not before or not after or after[-1] >= before[-1]:
        return None
    return best_step


def plot_losses(rows: list[dict], path: Path, lang: str = "en") -> None:
    """The train and validation loss against tokens seen, labelled and numbered in `lang` (en, pt)."""
    import matplotlib

    matplotlib.use("Agg")  # no display: write the file only
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    words = PLOT_WORDS[lang]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for key, curve, style in (("train_loss", "train", "-"), ("eval_loss", "validation", "o-")):
        points = [(r["tokens_seen"], r[key]) for r in rows if r[key] != "" and r["tokens_seen"] != ""]
        if points:
            ax.plot(*zip(*points), style, label=words[curve], markersize=4)
    turn = overfitting_turn(*([(r["step"], r[key]) for r in rows if r[key] != ""]
                              for key in ("eval_loss", "train_loss")))
    turn_row = next((r for r in rows if r["step"] == turn and r["tokens_seen"] != ""), None)
    if turn_row is not None:  # overfitting: mark where validation loss was lowest
        ax.axvline(turn_row["tokens_seen"], color="gray", linestyle="--", label=words["turn"].format(step=turn))
    ax.set_xlabel(words["x"])
    ax.set_ylabel(words["y"])
    ax.set_title(words["title"])
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: fmt(value, lang, ",.0f")))  # 819,200 / 819.200
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: fmt(value, lang, "g")))  # 5.5 / 5,5
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


class SampleTextCallback(TrainerCallback):
    """At every evaluation, continue fixed prompts greedily and with one seeded sample (the default sampling of a
    saved model, minigpt.teaching.default_sampling): the visible path from gibberish to text. Uses a forked RNG so
    that sampling never changes the training run. Each sample also goes into the Trainer's log history, which
    every checkpoint saves: the samples from before a resume are kept."""

    def __init__(self, tokenizer, prompts: list[str], max_new_tokens: int = 48, seed: int = 0, on_sample=None):
        self.tokenizer = tokenizer
        self.on_sample = on_sample
        self.prompts = prompts
        self.max_new_tokens = max_new_tokens
        self.seed = seed
        self.samples: list[dict] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.samples = logged_samples(state.log_history)  # those of the checkpoint being resumed, if any

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        if not args.should_save or model is None or (self.samples and self.samples[-1]["step"] == state.global_step):
            return  # not the main process, or this step was sampled already (the final evaluation)
        tokens_seen = next((e["tokens_seen"] for e in reversed(state.log_history) if "tokens_seen" in e), 0)
        for prompt in self.prompts:
            try:
                greedy = self.complete(model, prompt, do_sample=False)
                sampled = self.complete(model, prompt, **default_sampling())
            except Exception as error:  # a sample is for watching: one that fails is said, the run goes on
                logger.warning("sample @ step %d failed (%s: %s); training goes on", state.global_step,
                               type(error).__name__, str(error).splitlines()[0] if str(error) else "")
                continue
            sample = {"step": state.global_step, "tokens_seen": tokens_seen, "prompt": prompt,
                      "greedy": greedy, "sampled": sampled}
            self.samples.append(sample)
            state.log_history.append({"step": state.global_step, "sample": sample})
            if self.on_sample is not None:
                self.on_sample(sample)
            logger.info("sample @ step %d | greedy: %r | sampled: %r", state.global_step, prompt + greedy,
                           prompt + sampled)

    @torch.no_grad()
    def complete(self, model, prompt: str, **generate_kwargs) -> str:
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        ids = self.tokenizer(prompt, return_tensors="pt").input_ids.to(device)
        if ids.shape[1] == 0:  # an empty prompt: start from the end-of-text token
            ids = torch.tensor([[self.tokenizer.eos_token_id]], device=device)
        context = model.config.max_position_embeddings
        ids = ids[:, -(context // 2):]  # a prompt longer than half the context keeps its end
        limit = context - ids.shape[1]
        try:
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(self.seed)
                out = model.generate(ids, attention_mask=torch.ones_like(ids),
                                     max_new_tokens=min(self.max_new_tokens, limit),
                                     pad_token_id=self.tokenizer.pad_token_id, **generate_kwargs)
        finally:
            model.train(was_training)
        return self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


class OverfittingCallback(TrainerCallback):
    """Say so when validation loss has risen for `patience` evaluations in a row while training loss fell:
    the model is memorising its training text instead of learning the language."""

    def __init__(self, patience: int = 3):
        self.patience = patience
        self.warned_at: int | None = None

    def on_evaluate(self, args, state, control, **kwargs):
        evals = [(e["step"], e["eval_loss"]) for e in state.log_history if "eval_loss" in e]
        if len(evals) <= self.patience or self.warned_at is not None:
            return
        recent = evals[-(self.patience + 1):]
        rising = all(b[1] > a[1] for a, b in zip(recent, recent[1:]))
        train = [e["loss"] for e in state.log_history if "loss" in e and e["step"] > recent[0][0]]
        falling = len(train) >= 2 and train[-1] < train[0]
        if rising and falling:
            self.warned_at = state.global_step
            logger.warning(
                "overfitting: validation loss rose for %d evaluations (%.3f -> %.3f) while training loss fell "
                "(%.3f -> %.3f). Use --early_stopping_patience N to stop and keep the best model, more data, "
                "dropout, or a smaller model.", self.patience, recent[0][1], recent[-1][1], train[0], train[-1])


class DivergenceCallback(TrainerCallback):
    """Stop at an evaluation whose loss is not finite: the Trainer evaluates before it saves, so the weights that
    gave it never become a checkpoint (checkpoints saved since the weights broke go when the run stops: see
    minigpt.run_folder.drop_checkpoints_from). Listed before the callbacks that use the evaluated model."""

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        loss = (metrics or {}).get("eval_loss")
        if loss is not None and not math.isfinite(loss):
            raise Diverged(state.global_step, loss, evaluation=True)


class StopOnEventCallback(TrainerCallback):
    """End training at the next step once `event` is set (the app's Stop button); the model stays usable."""

    def __init__(self, event: threading.Event):
        self.event = event

    def on_step_end(self, args, state, control, **kwargs):
        if self.event.is_set():
            control.should_training_stop = True
