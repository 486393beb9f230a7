"""Training for a number of minutes (--max_minutes): the whole command, from its start to the saved model, ends
within the budget, and the warmup-stable-decay schedule ends with it.

The speed is not known before training. The first steps (a probe) measure it, and the plan lays out the steps that
fit the time left after what the run still has to do: the evaluations and checkpoints on the way, then the last
evaluation, the bits-per-byte score and the saving of the model. Everything before training (imports, reading the
corpus, training the tokenizer, tokenizing) has already been spent from the budget when the plan is made. The speed
is measured again at every step (another process may take a core): when the steps that fit change, the plan follows,
and a decay already under way is compressed, so that it always ends before the deadline.

`TimePlan` is the schedule: the learning-rate factor of each step, for torch's LambdaLR. A callable object's numbers
are saved by LambdaLR itself in every checkpoint's scheduler.pt, so a resumed run keeps its plan (it may only shorten
it, to fit the new command's deadline). `TimePlanCallback` measures, plans and stops the run at the planned step.
"""

import logging
import math
import time

from transformers import TrainerCallback

logger = logging.getLogger("minigpt")

PROBE_STEPS = 4  # the first plan comes after one measured step; re-plans after this many
SPEED_WINDOW = 30  # the speed is the mean of this many recent steps
TARGET = 0.98  # plan to end at this fraction of the budget: the rest absorbs what the estimates miss
FINISH_SECONDS = 1.5  # after training, besides the score and the save: the loss plot, the card, the process's exit
STEPS_UPPER_BOUND = 10**7  # the Trainer's own max_steps in a planned run: the plan stops it long before


def process_start_time() -> float:
    """When this process started, on time.time()'s clock: a command's budget counts its imports too."""
    import psutil

    return psutil.Process().create_time()


class TimePlan:
    """The learning rate's factor at each step (for LambdaLR): linear warmup over `warmup` steps (a fraction < 1: of
    the planned steps), then 1, then a decay to 0 over the last `decay_fraction` of the planned steps (cosine, as
    transformers' warmup_stable_decay, or linear). Its attributes are plain numbers: LambdaLR saves them with the
    scheduler, and loads them back into this object on a resume."""

    def __init__(self, warmup: float = 0.05, decay_fraction: float = 0.3, decay_type: str = "cosine"):
        self.warmup = warmup
        self.decay_fraction = decay_fraction
        self.decay_type = decay_type
        self.total_steps = 0  # the planned number of steps; 0 while the probe runs
        self.decay_start = 0  # the step at which the decay begins (began)
        self.anchor_step, self.anchor_factor = 0, 1.0  # the decay runs from here, at this factor, to 0 at the end
        self.plans = 0  # how many times the steps were laid out (1: never re-planned)
        self.seconds_per_step = 0.0  # the speed the last plan used
        self.budget_seconds = 0.0
        self.setup_seconds = 0.0  # spent before training began (its first process, for a resumed run)

    def warmup_steps(self, total: int) -> int:
        return round(self.warmup * total) if self.warmup < 1 else int(self.warmup)

    def __call__(self, step: int) -> float:
        if not self.total_steps:  # the probe: warm up as for a run of a thousand steps
            return min(1.0, step / max(1, self.warmup_steps(1000)))
        if step >= self.total_steps:
            return 0.0
        if step >= self.anchor_step and self.anchor_step >= self.decay_start:
            progress = (step - self.anchor_step) / max(1, self.total_steps - self.anchor_step)
            shape = 1 - progress if self.decay_type == "linear" else 0.5 * (1 + math.cos(math.pi * progress))
            return self.anchor_factor * shape
        warmup = self.warmup_steps(self.total_steps)
        return min(1.0, step / warmup) if step < warmup else 1.0

    @property
    def decaying(self) -> bool:
        return bool(self.total_steps) and self.anchor_step >= self.decay_start

    def lay_out(self, total: int, step: int) -> None:
        """Plan `total` steps, at step `step`. Before the decay, the decay moves to the new end; in the decay, the
        rest of it is compressed (or stretched) from the current factor to 0 at the new end."""
        total = max(total, step + 1)
        current = self(step)
        decay_start = max(self.warmup_steps(total), total - max(1, round(self.decay_fraction * total)))
        if self.total_steps and step >= self.decay_start:  # already decaying: from here, at the current factor
            self.anchor_step, self.anchor_factor = step, current
        elif decay_start <= step:  # the decay should have begun: it begins now
            self.decay_start = self.anchor_step = step
            self.anchor_factor = current
        else:
            self.decay_start = self.anchor_step = decay_start
            self.anchor_factor = 1.0
        self.total_steps = total
        self.plans += 1

    def record(self, tokens_per_step: int) -> dict:
        """What run_settings.json, the log and the card say about the plan."""
        return {"budget_minutes": round(self.budget_seconds / 60, 4), "planned_steps": self.total_steps,
                "planned_tokens": self.total_steps * tokens_per_step,
                "warmup_steps": self.warmup_steps(self.total_steps), "decay_start_step": self.decay_start,
                "seconds_per_step": round(self.seconds_per_step, 5), "setup_seconds": round(self.setup_seconds, 2),
                "plans": self.plans}


class TimePlanCallback(TrainerCallback):
    """Measures the speed (steps, evaluations, checkpoints), lays the plan out after the probe, re-plans when the
    steps that fit change, and ends training at the planned step (the Trainer's own end-of-training evaluation and
    checkpoint included, by setting state.max_steps to the plan)."""

    def __init__(self, plan: TimePlan, deadline: float, budget_seconds: float, clock, tokens_per_step: int,
                 eval_tokens: int = 0, checkpoint_bytes: int = 0, score_after: bool = True, on_plan=None):
        self.plan, self.deadline, self.clock = plan, deadline, clock
        self.budget_seconds = budget_seconds
        self.tokens_per_step, self.eval_tokens = tokens_per_step, eval_tokens
        self.checkpoint_bytes = checkpoint_bytes
        self.score_after = score_after  # a bits-per-byte pass over the validation blocks follows training
        self.on_plan = on_plan  # called with the planned steps (the progress bar's length)
        self.steps: list[float] = []  # seconds of each step, and of the pause after it when nothing else happened
        self.eval_seconds: list[float] = []  # each evaluation's (its samples included)
        self.save_seconds: list[float] = []  # each checkpoint's
        self.step_start = self.last_end = None
        self.evaluated = self.saved = False
        self.process_steps = 0
        self.keep = False  # a resumed plan: only shortened to fit, never lengthened
        self.warned = False  # that the budget cannot hold the run

    # -- measuring

    def on_train_begin(self, args, state, control, **kwargs):
        self.keep = bool(self.plan.total_steps)  # LambdaLR loaded the plan of the checkpoint being resumed
        if not self.keep:
            self.plan.budget_seconds = self.budget_seconds
            self.plan.setup_seconds = self.budget_seconds - (self.deadline - time.time())
        self.last_end = time.perf_counter()
        if self.keep:
            self._show(args, state)
            logger.info("time plan kept from the checkpoint: %s", self._describe())

    def on_evaluate(self, args, state, control, **kwargs):
        self.evaluated = True

    def on_save(self, args, state, control, **kwargs):
        self.saved = True

    def on_step_begin(self, args, state, control, **kwargs):
        now = time.perf_counter()
        pause = now - self.last_end
        if self.evaluated:
            self.eval_seconds.append(self.clock.last_eval_seconds)
            pause -= self.clock.last_eval_seconds
        if self.saved:
            self.save_seconds.append(max(0.0, pause))
        elif not self.evaluated and self.steps:
            self.steps[-1] += pause  # logging, the next batch: part of a step's cost
        self.evaluated = self.saved = False
        self.step_start = now

    def on_step_end(self, args, state, control, **kwargs):
        self.last_end = time.perf_counter()
        self.process_steps += 1
        if self.process_steps > 1:  # a process's first step carries one-off costs
            self.steps.append(self.last_end - self.step_start)
            del self.steps[:-SPEED_WINDOW]
        ending = self.plan.total_steps and state.global_step >= self.plan.total_steps  # the Trainer stops here
        if self.steps and not ending and (len(self.steps) >= PROBE_STEPS or self.plan.total_steps == 0):
            self._plan(args, state)  # before this step's checkpoint: it saves the plan

    # -- planning

    def seconds_per_step(self) -> float:
        return sum(self.steps) / len(self.steps)

    def _eval_cost(self) -> float:
        if self.eval_seconds:  # the slowest since the first (whose one-off costs a later one does not pay)
            return max(self.eval_seconds[1:] or self.eval_seconds)
        return self.eval_tokens / self.tokens_per_step * self.seconds_per_step() / 3  # a forward pass: a third

    def _save_cost(self) -> float:
        return max(self.save_seconds) if self.save_seconds else 0.3 + self.checkpoint_bytes / 2e8

    def fitting_steps(self, args, state) -> int:
        """The most steps whose training, evaluations, checkpoints and the finish fit before the deadline (at the end
        of step state.global_step)."""
        step, per_step = state.global_step, self.seconds_per_step()
        evaluate, save = self._eval_cost(), self._save_cost()
        every_eval = state.eval_steps if args.eval_strategy == "steps" else 0
        every_save = state.save_steps if args.save_strategy == "steps" else 0
        # after training: the score over the validation blocks, and the final evaluation where the Trainer made none
        finish = FINISH_SECONDS + save + evaluate * self.score_after * (1 if every_eval else 2)
        left = self.deadline - time.time() - (1 - TARGET) * self.budget_seconds - finish

        def cost(total: int) -> float:  # from now to the end of step `total`, its last evaluation and checkpoint
            evals = _multiples(step, total, every_eval) + (1 if every_eval and total % every_eval else 0)
            saves = _multiples(step, total, every_save) + (1 if every_save and total % every_save else 0)
            return (total - step) * per_step + evals * evaluate + saves * save

        rate = per_step + (evaluate / every_eval if every_eval else 0) + (save / every_save if every_save else 0)
        total = step + max(1, int(left / rate))
        while total > step + 1 and cost(total) > left:
            total -= max(1, (total - step) // 100)
        if cost(total) > left and not self.warned:
            self.warned = True
            logger.warning("time plan: %g min cannot hold more training, the last evaluation and the save "
                           "(%.1f s are left, one step and its finish take %.1f s): this run will end late; give it "
                           "more minutes", self.budget_seconds / 60, max(0.0, left + finish), cost(total) + finish)
        return total

    def _plan(self, args, state) -> None:
        plan, step = self.plan, state.global_step
        fitting = self.fitting_steps(args, state)
        left = max(1, plan.total_steps - step)
        if plan.total_steps:
            shrink = plan.total_steps - fitting >= max(1, 0.01 * left)
            grow = not self.keep and fitting - plan.total_steps > max(1, 0.02 * left)
            if not (shrink or grow):
                return
        plan.seconds_per_step = self.seconds_per_step()
        first = not plan.total_steps
        plan.lay_out(fitting, step)
        self._show(args, state)
        state.log_history.append({"step": step, "time_plan": plan.record(self.tokens_per_step)})
        if first:
            logger.info("time plan: %s", self._describe())
        else:
            logger.info("time plan changed at step %d (%.3f s a step now): %s", step, plan.seconds_per_step,
                        self._describe())

    def _show(self, args, state) -> None:
        state.max_steps = self.plan.total_steps  # the Trainer's flow ends training there (evaluation, checkpoint)
        state.compute_steps(args, self.plan.total_steps)  # fractions of the steps: of the planned ones
        if self.on_plan is not None:
            self.on_plan(self.plan.total_steps)

    def _describe(self) -> str:
        p, r = self.plan, self.plan.record(self.tokens_per_step)
        return (f"{p.total_steps} steps ({r['planned_tokens']:,} tokens) in {p.budget_seconds / 60:g} min: "
                f"warmup {r['warmup_steps']}, stable to step {p.decay_start}, decay to 0 at step {p.total_steps}; "
                f"{p.setup_seconds:.1f} s went to the setup, {p.seconds_per_step:.3f} s a step")


def _multiples(start: int, end: int, every: int) -> int:
    """How many multiples of `every` lie in (start, end]."""
    return end // every - start // every if every else 0
