"""The learning-rate schedule a run trains with: warmup_stable_decay's decay length filled in from --decay_fraction,
and the checks that a schedule fits the run (a decay or a warmup longer than the run trains nothing and says
nothing: the Trainer accepts it).

Checked twice with the same function: when the arguments are made (with --max_steps, before the corpus is read)
and when the Trainer makes the scheduler (with --num_train_epochs, once the data gives the number of steps).
"""

import inspect
import math

from transformers import SchedulerType
from transformers.optimization import TYPE_TO_SCHEDULER_FUNCTION

from minigpt.errors import SetupError

# What get_scheduler itself passes: not for --lr_scheduler_kwargs
_GIVEN_BY_THE_TRAINER = {"optimizer", "num_warmup_steps", "num_training_steps", "last_epoch", "kwargs"}


def scheduler_kwargs(args, num_training_steps: int) -> dict | None:
    """args.lr_scheduler_kwargs, with warmup_stable_decay's num_decay_steps filled in from args.decay_fraction."""
    kwargs = args.lr_scheduler_kwargs or {}
    if args.lr_scheduler_type == SchedulerType.WARMUP_STABLE_DECAY and "num_decay_steps" not in kwargs:
        return {**kwargs, "num_decay_steps": max(1, round(args.decay_fraction * num_training_steps))}
    return args.lr_scheduler_kwargs


def check_scheduler_kwargs(args) -> None:
    """--lr_scheduler_kwargs: names the scheduler takes, numbers that are finite and not negative."""
    kwargs = args.lr_scheduler_kwargs or {}
    if not isinstance(kwargs, dict):
        raise SetupError(f"--lr_scheduler_kwargs must be a JSON object, e.g. '{{\"num_decay_steps\": 100}}', "
                         f"got {kwargs!r}")
    kind = SchedulerType(args.lr_scheduler_type)
    takes = [name for name in inspect.signature(TYPE_TO_SCHEDULER_FUNCTION[kind]).parameters
             if name not in _GIVEN_BY_THE_TRAINER]
    if "kwargs" in inspect.signature(TYPE_TO_SCHEDULER_FUNCTION[kind]).parameters:
        return  # reduce_lr_on_plateau, greedy: the scheduler checks its own keyword arguments
    for name, value in kwargs.items():
        if name not in takes:
            raise SetupError(f"--lr_scheduler_kwargs: {kind.value} takes no {name!r}; it takes "
                             f"{', '.join(takes) or 'nothing'}")
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if name.endswith("_steps") and not (number and value == int(value) and value >= 0):
            raise SetupError(f"--lr_scheduler_kwargs: {name} must be a whole number of steps >= 0, got {value!r}")
        if number and not (math.isfinite(value) and value >= 0):
            raise SetupError(f"--lr_scheduler_kwargs: {name} must be a finite number >= 0, got {value}")


def check_schedule(args, num_training_steps: int) -> None:
    """Warmup and (warmup_stable_decay) stable and decay phases that fit in `num_training_steps`."""
    warmup = args.get_warmup_steps(num_training_steps)
    if warmup > num_training_steps:
        raise SetupError(f"--warmup_steps {args.warmup_steps:g} is longer than the run ({num_training_steps} steps): "
                         f"lower --warmup_steps (a fraction < 1 is a share of the steps)")
    given = args.lr_scheduler_kwargs or {}
    if args.lr_scheduler_type != SchedulerType.WARMUP_STABLE_DECAY or not given.keys() & {"num_decay_steps",
                                                                                           "num_stable_steps"}:
        return  # the decay --decay_fraction makes fits any run (a very short one overlaps its warmup)
    kwargs = scheduler_kwargs(args, num_training_steps)
    decay, stable = kwargs["num_decay_steps"], kwargs.get("num_stable_steps") or 0
    if warmup + stable + decay > num_training_steps:
        stable_words = f" + {stable} stable" if stable else ""
        raise SetupError(f"--lr_scheduler_kwargs: {warmup} warmup{stable_words} + {decay} decay steps are longer "
                         f"than the run ({num_training_steps} steps), whose learning rate would never decay: lower "
                         f"num_decay_steps to at most {max(0, num_training_steps - warmup - stable)} or raise "
                         f"--max_steps")
    if decay < 1:
        raise SetupError("--lr_scheduler_kwargs: num_decay_steps must be at least 1")
