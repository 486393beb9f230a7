"""--max_minutes: the run ends within its budget, its warmup-stable-decay schedule laid out over the steps that fit
and decayed to the end before the deadline; a resumed run keeps its plan."""

import shutil
import time

import pytest
import torch
from test_training import TINY, corpus_file, read_json
from transformers import HfArgumentParser

from minigpt.arguments import DataArguments, MiniGPTTrainingArguments, ModelArguments
from minigpt.time_plan import TimePlan
from minigpt.training import run_training

BUDGET_MINUTES = 0.1


def test_the_plan_warms_up_holds_and_decays_to_zero_at_the_planned_end():
    plan = TimePlan(warmup=0.05, decay_fraction=0.3)
    plan.lay_out(200, step=3)
    factors = [plan(step) for step in range(201)]
    assert factors[0] == 0 and factors[5] == pytest.approx(0.5) and factors[10] == 1.0  # 10 warmup steps
    assert set(factors[10:141]) == {1.0} and factors[141] < 1.0  # stable to step 140, then the decay
    assert all(b <= a for a, b in zip(factors[140:], factors[141:])) and factors[200] == 0.0

    plan.lay_out(120, step=50)  # slower than measured: the decay moves forward, still 30 % of the steps
    assert plan.decay_start == 84 and plan(84) == 1.0 and plan(85) < 1.0 and plan(120) == 0.0
    before = plan(100)
    plan.lay_out(110, step=100)  # slower still, in the decay: from the factor it had, to 0 at the new end
    assert plan(100) == pytest.approx(before) and plan(110) == 0.0 and 0 < plan(105) < before
    assert plan.plans == 3


def test_the_plan_travels_in_the_schedulers_state(tmp_path):
    """LambdaLR saves a callable object's numbers with the scheduler (scheduler.pt): a resume gets the plan back."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    plan = TimePlan()
    plan.lay_out(500, step=7)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, plan)
    torch.save(scheduler.state_dict(), tmp_path / "scheduler.pt")
    restored = TimePlan()
    torch.optim.lr_scheduler.LambdaLR(optimizer, restored).load_state_dict(
        torch.load(tmp_path / "scheduler.pt", weights_only=True))
    assert vars(restored) == vars(plan)


class FakeClock:
    """time.time() and time.perf_counter() for minigpt.time_plan, moved by the test."""

    def __init__(self):
        self.now = 1000.0

    def time(self):
        return self.now

    perf_counter = time


def test_a_slowdown_mid_run_is_planned_around_and_the_decay_still_ends_before_the_deadline(monkeypatch):
    """Another process takes a core half-way (each step three times slower): the plan shrinks, the decay moves
    forward, and training ends, the learning rate at 0, early enough for the finish to fit the budget."""
    from types import SimpleNamespace

    from transformers import TrainerControl, TrainerState

    import minigpt.time_plan as time_plan

    clock = FakeClock()
    monkeypatch.setattr(time_plan, "time", clock)
    plan, budget = TimePlan(warmup=0.05, decay_fraction=0.3), 100.0
    callback = time_plan.TimePlanCallback(plan, clock.now + budget - 10, budget, SimpleNamespace(last_eval_seconds=0),
                                          tokens_per_step=256, score_after=False)  # 10 s of setup already spent
    args = SimpleNamespace(eval_strategy="no", save_strategy="no", logging_steps=10, eval_steps=None, save_steps=None)
    state, control = TrainerState(max_steps=10**7), TrainerControl()
    callback.on_train_begin(args, state, control)
    factors = []
    while state.global_step < state.max_steps:
        callback.on_step_begin(args, state, control)
        factors.append(plan(state.global_step))
        clock.now += 0.1 if state.global_step < 300 else 0.3
        state.global_step += 1
        callback.on_step_end(args, state, control)
    finish = time_plan.FINISH_SECONDS + callback._save_cost()
    assert plan.plans > 2 and 300 < plan.total_steps == state.global_step < 900  # 900: the first plan's length
    assert 0.9 * (budget - 10) < clock.now + finish - (1000.0 - 10) <= budget * time_plan.TARGET + 1
    assert plan(state.global_step) == 0.0 and factors[-1] < 0.01
    assert max(abs(b - a) for a, b in zip(factors[60:], factors[61:])) < 0.05  # no jump after the warmup


def test_a_budget_spent_before_training_trains_one_step_more_and_says_so(monkeypatch, caplog):
    from types import SimpleNamespace

    from transformers import TrainerControl, TrainerState

    import minigpt.time_plan as time_plan

    clock = FakeClock()
    monkeypatch.setattr(time_plan, "time", clock)
    plan = TimePlan()
    callback = time_plan.TimePlanCallback(plan, clock.now - 1, 6.0, SimpleNamespace(last_eval_seconds=0),
                                          tokens_per_step=256, score_after=False)  # the setup took 7 s of 6
    args = SimpleNamespace(eval_strategy="no", save_strategy="no", logging_steps=10, eval_steps=None, save_steps=None)
    state, control = TrainerState(max_steps=10**7), TrainerControl()
    callback.on_train_begin(args, state, control)
    for _ in range(2):
        callback.on_step_begin(args, state, control)
        clock.now += 0.5
        state.global_step += 1
        callback.on_step_end(args, state, control)
    assert plan.total_steps == state.max_steps == 3 and plan(3) == 0.0
    assert "0.1 min cannot hold more training" in caplog.text and "give it more minutes" in caplog.text


def parse(*argv):
    return HfArgumentParser((ModelArguments, DataArguments, MiniGPTTrainingArguments)).parse_args_into_dataclasses(
        args=[str(a) for a in argv])


def timed_run(corpus, out):
    """One time-planned run through run_training (train.py's path; train.py counts from its process's start)."""
    argv = ["--train_file", corpus, "--output_dir", out, "--max_minutes", BUDGET_MINUTES, "--eval_steps", 6,
            "--save_steps", 2, "--vocab_size", 300, "--disable_tqdm", "true", *TINY]
    start = time.time()
    result = run_training(*parse(*argv), started_at=start)
    return result, time.time() - start


def test_a_budgeted_run_ends_in_time_with_its_schedule_decayed_and_a_resume_keeps_the_plan(tmp_path, caplog):
    caplog.set_level("INFO", logger="minigpt")
    corpus, out = corpus_file(tmp_path), tmp_path / "run"
    result, seconds = timed_run(corpus, out)
    # the 5 % bound is measured by a benchmark (bench/README.md), not timed here: a loose bound catches a plan
    # that ignores its budget without making a slow machine fail the test
    assert seconds <= 2 * 60 * BUDGET_MINUTES, seconds
    plan = read_json(out / "run_settings.json")["time_plan"]
    steps = plan["planned_steps"]
    assert plan["planned_tokens"] == steps * 8 * 32
    # the tokens the batches held: an epoch's short last batch holds fewer than a full step's
    assert 0.8 * plan["planned_tokens"] <= read_json(out / "all_results.json")["train_tokens"] <= plan["planned_tokens"]
    assert steps >= 3 and plan["budget_minutes"] == BUDGET_MINUTES and "time plan: " in caplog.text
    assert read_json(out / "run_settings.json")["max_steps"] is None  # the plan decided the steps, not max_steps
    scheduler = torch.load(out / f"checkpoint-{steps}" / "scheduler.pt", weights_only=True)
    assert scheduler["_last_lr"][0] == 0.0 and scheduler["lr_lambdas"][0]["total_steps"] == steps  # decayed to 0
    assert f"{steps} steps" in (out / "README.md").read_text()  # the card tells the plan

    # a run killed after a checkpoint, resumed by the same command: the plan comes back from the checkpoint
    middle = next(p for p in out.glob("checkpoint-*") if p.name != f"checkpoint-{steps}")
    kept = torch.load(middle / "scheduler.pt", weights_only=True)["lr_lambdas"][0]
    assert 0 < kept["total_steps"] and kept["plans"] >= 1  # planned after the first measured step, before saving
    killed = tmp_path / "killed"
    killed.mkdir()
    shutil.copytree(middle, killed / middle.name)
    caplog.clear()
    resumed, seconds = timed_run(corpus, killed)
    assert resumed.resumed_from and "time plan kept from the checkpoint" in caplog.text
    assert seconds <= 2 * 60 * BUDGET_MINUTES, seconds
    final = read_json(killed / "run_settings.json")["time_plan"]
    assert final["budget_minutes"] == BUDGET_MINUTES and final["setup_seconds"] == round(kept["setup_seconds"], 2)
    assert final["planned_steps"] <= kept["total_steps"]  # kept, or shortened to fit; never lengthened
    assert 0.8 * final["planned_tokens"] <= read_json(killed / "all_results.json")["train_tokens"] <= final["planned_tokens"]


def test_a_budget_with_another_schedule_is_refused_before_any_work(tmp_path, capsys):
    from test_training import run_cli

    out = tmp_path / "out"
    assert run_cli("--train_file", corpus_file(tmp_path), "--output_dir", out, "--max_minutes", 1,
                   "--lr_scheduler_type", "cosine", *TINY) == 2
    assert "--max_minutes plans a warmup-stable-decay schedule" in capsys.readouterr().err
    assert not out.exists()


def test_the_command_counts_its_budget_from_its_process_start(tmp_path, monkeypatch):
    """train.py hands run_training its process's start: imports and setup are part of the minutes."""
    import psutil

    import train
    from minigpt.time_plan import process_start_time

    seen = {}

    def fake_run_training(*args, started_at=None, **kwargs):
        seen["started_at"] = started_at
        raise train.SetupError("stop here")

    monkeypatch.setattr(train, "run_training", fake_run_training)
    assert train.main(["--max_minutes", "1", "--output_dir", str(tmp_path / "out")]) == 2
    assert seen["started_at"] == process_start_time() == psutil.Process().create_time() < time.time()
