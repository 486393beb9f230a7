"""The public Space under many anonymous visitors and hostile scripts, through a real server and real HTTP
(gradio_client clients, raw POSTs with any session id): runs belong to their visitor, one training at a time with
a line that answers at once, floods of trainings and uploads that lock nobody out and fill no disk, the training
in its own process (a crash there is a failed run, not a dead app; the app's death is its death too), budgets
checked before anything is allocated and counted from a run's start, bounded disk, a visitor's runs evicted only
by that visitor, pushes only with the visitor's own login."""

import dataclasses
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import httpx
import psutil
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio.http_server  # noqa: E402
import huggingface_hub  # noqa: E402
from app_server import SPACE_ENV, follow, launched_app, local_client, signed_in_cookie, started_context  # noqa: E402
from app_server import served_client as visitor  # noqa: E402
from app_server import wait_for as wait_up_to  # noqa: E402
from gradio.utils import get_upload_folder  # noqa: E402
from gradio_client import handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from minigpt.hub import HubError, push_folder  # noqa: E402
from minigpt.loading import untrained_model  # noqa: E402
from minigpt.tokenizer_training import builtin_tokenizer  # noqa: E402
from space.registry import APP_RUN_FILE  # noqa: E402
from space.training_process import hide_owner_token  # noqa: E402
from space.uploads import uploads_on_disk  # noqa: E402
from space.visitors import owner_hash  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

PROMPT = "The value of"
LARGEST = dict(preset="base", vocab_size=32768, block_size=1024, batch_size=512, max_steps=1)


def wait_for(condition):
    return wait_up_to(condition, timeout=400.0)  # a training on a loaded machine


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A small text: its validation split is a few blocks, so a run's evaluations take no time."""
    words = "the model reads a text and learns to predict the next token of the text".split()
    path = tmp_path_factory.mktemp("corpus") / "notes.txt"
    path.write_text("\n\n".join(" ".join(words[(i * 5 + j) % len(words)] for j in range(10)) for i in range(60)))
    return path


# Low limits, so that a flood or a full disk takes a few requests: 3 runs kept, 2 per visitor; 2 trainings waiting,
# 2 per address; uploads of 0.2 MB, 1 MB of them at once.
LIMITS = {"MINIGPT_APP_MAX_RUNS": "3", "MINIGPT_APP_MAX_RUNS_PER_VISITOR": "2", "MINIGPT_APP_MAX_QUEUE": "2",
          "MINIGPT_APP_MAX_QUEUE_PER_CLIENT": "2", "MINIGPT_APP_MAX_UPLOAD_MB": "0.2",
          "MINIGPT_APP_MAX_UPLOADS_MB": "1"}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("space")
    with launched_app(root, env=LIMITS) as (ctx, url):
        yield SimpleNamespace(url=url, ctx=ctx, root=root)


def short_run(corpus, **overrides) -> dict:
    files = [handle_file(str(corpus))] if corpus is not None else []
    return dict(corpus_source="upload", files=files, hub_dataset="", preset="tiny",
                tokenizer_type="char", vocab_size=300, length_unit="steps", max_steps=3, epochs=1, batch_size=4,
                learning_rate=3e-3, block_size=16, seed=1) | overrides


def state_of(client) -> dict:
    return client.predict(api_name="/training_status")


def app_runs(served) -> list[str]:
    return sorted(p.name for p in served.ctx.runs_dir.iterdir() if (p / APP_RUN_FILE).is_file())


def train_children() -> list:
    return [p for p in multiprocessing.active_children() if p.name.startswith("minigpt-train-")]


def past_step(client, step: int) -> dict:
    """The client's status once its run has reached `step`, or once it is no longer running."""
    def reached():
        status = state_of(client)
        return status if status["state"] != "running" or (status.get("step") or 0) >= step else None

    return wait_for(reached)


def trained(client, corpus, **overrides) -> str:
    """A short run through /train, followed to its end; returns its folder's name."""
    client.predict(**short_run(corpus, **overrides), api_name="/train")
    status = follow(client)
    assert status["state"] in ("finished", "stopped"), status
    return status["model"].split("/", 1)[1]


# ----------------------------------------------------------------------------------------------------------------


UNTRAINED_KEYS = {"untrained/machado", "untrained/python-reference"}  # one per built-in corpus, offered to everybody


def visible_models(client) -> set[str]:
    """The model keys a visitor is offered, less the pre-trained GPT-2s that every visitor is offered."""
    return {m["key"] for m in client.predict(api_name="/models") if m["kind"] != "pretrained"}


def test_only_the_owner_stops_a_run_and_the_next_visitor_waits_in_line(served, corpus):
    a, b, c = visitor(served), visitor(served), visitor(served)
    a.predict(**short_run(corpus, max_steps=5000), api_name="/train")
    wait_for(lambda: (state_of(a).get("step") or 0) >= 2)

    # B sees that a training runs and how far it is, but not A's text, samples or run
    seen_by_b = state_of(b)
    assert seen_by_b["state"] == "idle" and seen_by_b["line"]["training"] and seen_by_b["line"]["step"] >= 2
    assert "samples" not in seen_by_b and "run" not in seen_by_b
    assert "another visitor" in b.predict(api_name="/stop")
    # a stop ends a run within a step or two (test_app): three steps after B's answer, A's run still trains
    asked = state_of(a)
    assert asked["state"] == "running" and asked["stop_requested_at"] is None
    assert past_step(a, asked["step"] + 3)["state"] == "running"

    # C waits in line (told at once), with a place and an estimated start; one training per visitor
    answer, *_ = c.predict(**short_run(corpus), api_name="/train")
    assert "In line: you are number <b>1</b>" in answer
    queued = state_of(c)
    assert queued["state"] == "queued" and queued["position"] == 1 and queued["wait_seconds"] is not None
    with pytest.raises(AppError, match="already have a training"):
        c.predict(**short_run(corpus), api_name="/train")

    assert "Stop requested" in a.predict(api_name="/stop")
    assert follow(a)["state"] == "stopped"
    status_c = follow(c)
    assert status_c["state"] == "finished" and status_c["step"] == 3

    # each run is its visitor's: listed, generated with and downloaded in their own session only
    run_a, run_c = state_of(a)["model"], status_c["model"]
    models_a = {m["key"] for m in a.predict(api_name="/models")}
    assert run_a in models_a and run_c not in models_a
    assert visible_models(b) == UNTRAINED_KEYS
    with pytest.raises(AppError, match="unknown model"):
        b.predict(PROMPT, model=run_a, max_new_tokens=5, api_name="/generate")
    with pytest.raises(AppError, match="unknown model"):
        b.predict(run_a, api_name="/download")
    assert a.predict(PROMPT, model=run_a, max_new_tokens=5, api_name="/generate").startswith(PROMPT)
    assert Path(a.predict(run_a, api_name="/download")).stat().st_size > 1000

    # the uploaded text stays private: neutral sample prompts, a card that names no content, no copy kept
    card = (served.ctx.runs_dir / run_c.split("/", 1)[1] / "README.md").read_text()
    assert "notes" not in card and "upload.txt" in card
    assert {s["prompt"] for s in status_c["samples"]} == {"The"}
    assert not list((served.ctx.tmp_dir / "uploads").rglob("*.txt"))
    assert not list((served.root / "gradio").rglob("notes.txt"))


def test_a_crash_inside_the_training_process_is_a_failed_run_and_the_app_stays_up(served, corpus):
    a = visitor(served)
    a.predict(**short_run(corpus, max_steps=5000), api_name="/train")
    wait_for(lambda: (state_of(a).get("step") or 0) >= 1)
    children = train_children()
    assert len(children) == 1 and children[0].pid != os.getpid()
    os.kill(children[0].pid, signal.SIGKILL)  # what the kernel's OOM killer does
    status = follow(a, timeout=120)
    assert status["state"] == "failed" and "ended unexpectedly" in status["error"] and "-9" in status["error"]
    assert a.predict(PROMPT, max_new_tokens=5, api_name="/generate").startswith(PROMPT)
    assert not any(p.name.startswith("2") and not (p / APP_RUN_FILE).exists() for p in served.ctx.runs_dir.iterdir())


def test_the_largest_form_settings_are_refused_before_any_memory_is_allocated(served, corpus):
    pt = visitor(served, **{"Accept-Language": "pt-BR"})
    rss = psutil.Process().memory_info().rss
    with pytest.raises(AppError, match=r"MINIGPT_APP_MAX_MEMORY_GB\)\. Diminua Tamanho do lote"):
        pt.predict(**short_run(corpus, **LARGEST), api_name="/train")
    assert psutil.Process().memory_info().rss - rss < 100 * 2**20
    assert not train_children()
    assert state_of(pt)["state"] == "idle"


def test_a_40_mb_prompt_is_refused_before_tokenizing(served):
    """Sent from another process (the server's memory is this process's): refused at the door, memory unchanged;
    a 100 kB prompt gets through the door and is refused by length, in words, before any tokenizer sees it."""
    code = ("import sys, time\nfrom gradio_client import Client\n"
            "c = Client(sys.argv[1], verbose=False, ssl_verify=False)\n"
            "start = time.perf_counter()\ntry:\n    c.predict('word ' * (8 * 2**20), api_name='/generate')\n"
            "except Exception as error:\n    print(time.perf_counter() - start, str(error).splitlines()[0])\n")
    rss = psutil.Process().memory_info().rss
    done = subprocess.run([sys.executable, "-c", code, served.url], capture_output=True, text=True, timeout=120)
    assert "413" in done.stdout, done.stdout + done.stderr[-2000:]
    assert psutil.Process().memory_info().rss - rss < 100 * 2**20
    a = visitor(served, **{"Accept-Language": "pt-BR"})
    with pytest.raises(AppError, match="O prompt tem 100.000 caracteres; o limite é 4.000"):
        a.predict("x" * 100_000, max_new_tokens=5, api_name="/generate")
    with pytest.raises(AppError, match="O texto tem 100.000 caracteres"):
        a.predict("x" * 100_000, api_name="/surprise")
    assert a.predict(PROMPT, max_new_tokens=5, api_name="/generate").startswith(PROMPT)


def test_a_visitors_runs_are_evicted_only_by_that_visitor(served, corpus):
    """3 runs kept, 2 per visitor; the first test left two other visitors' runs (A's and C's). A visitor who
    presses Start and Stop again and again replaces their own runs, never the others' fresh ones."""
    others = app_runs(served)
    assert len(others) == 2
    d = visitor(served)
    first = trained(d, corpus, max_steps=1)  # the app is full now
    second = trained(d, corpus, max_steps=1)  # D's new run replaces D's own
    assert app_runs(served) == sorted([*others, second]) and first not in app_runs(served)

    e = visitor(served)
    with pytest.raises(AppError, match="keeps at most 3 trained models, and none is old enough"):
        e.predict(**short_run(corpus, max_steps=1), api_name="/train")  # E has no run to replace
    record = served.ctx.runs_dir / others[0] / APP_RUN_FILE
    os.utime(record, (time.time() - 7200, time.time() - 7200))  # A's run ended two hours ago
    third = trained(e, corpus, max_steps=1)  # it makes room
    assert app_runs(served) == sorted([others[1], second, third])
    assert [r.name for r in served.ctx.registry.runs(owner_hash(f"session:{d.session_hash}"))] == [second]

    # what the Generate tab says of a run (its size, its corpus) is for its owner too, whatever key is tried
    from space.tab_generate import model_facts

    as_d, as_e = (SimpleNamespace(session_hash=c.session_hash, headers={}) for c in (d, e))
    assert f"**{second}**" in model_facts(served.ctx, f"run/{second}", None, request=as_d)
    assert model_facts(served.ctx, f"run/{second}", "untrained", None, request=as_e).startswith("**untrained**")
    assert second not in model_facts(served.ctx, f"run/{second}", second, None, request=as_e)


@pytest.fixture
def room(served, monkeypatch):
    """Room for more runs than the eviction test left (the app is full after it)."""
    monkeypatch.setattr(served.ctx, "limits", dataclasses.replace(served.ctx.limits, max_runs=100))
    return monkeypatch


def test_a_flood_of_trainings_from_one_address_locks_nobody_out(served, room):
    """79 POSTs to /train from random sessions, 100000 steps each, nobody reading the answers (the attack that
    filled Gradio's queue): the line takes this address's share, the rest are refused at once; a new visitor
    from the same address still generates and stops within seconds."""
    form = ["python-reference", [], "", "tiny", "bpe", 300, "steps", 100000, 1, 1, 8, 3e-3, 32, 1, False, False]
    with httpx.Client(base_url=served.url, timeout=30, verify=False) as http:
        answers = [http.post("gradio_api/call/train", json={"data": form, "session_hash": uuid.uuid4().hex})
                   for _ in range(79)]
        assert {a.status_code for a in answers} <= {200, 429}  # never Gradio's "Queue is full" (503)
        newcomer = visitor(served)
        text = newcomer.submit(PROMPT, max_new_tokens=5, api_name="/generate").result(timeout=60)
        assert text.startswith(PROMPT)
        assert "another visitor" in newcomer.submit(api_name="/stop").result(timeout=60)
        assert state_of(newcomer)["line"]["training"] is True
        assert len(served.ctx.line.active()) <= 2  # this address's share of the line
        # the refused trainings were told why, in the answers nobody read (read here: once every POST has been
        # through /train, no late one can take a place that the clean-up below frees)
        replies = [http.get(f"gradio_api/call/train/{a.json()['event_id']}").text for a in answers
                   if a.status_code == 200]
        refused = [r for r in replies if "event: error" in r and "network address already has 2 trainings" in r]
        assert refused and len(replies) - len(refused) <= 2, replies[:3]
    for job in served.ctx.line.active():
        if not served.ctx.line.leave(job):
            job.request_stop()
    wait_for(lambda: not served.ctx.line.active())
    assert not train_children()


def test_uploads_are_bounded_where_they_enter(served):
    """40 uploads of 2.5 times the limit (the attack: 9.9 MB against 5 MB), then 40 under it: refused as they
    enter, at most the app's upload room on disk; uploads no training takes are deleted by the janitor."""
    folder = Path(get_upload_folder())
    with httpx.Client(base_url=served.url, timeout=30, verify=False) as http:
        big = b"x" * int(0.5 * 2**20)
        refused = [http.post("gradio_api/upload", files={"files": (f"big{i}.txt", big)}) for i in range(40)]
        assert {r.status_code for r in refused} == {413} and "at most 0.2 MB" in refused[0].text
        small = b"y" * int(0.15 * 2**20)
        answers = [http.post("gradio_api/upload", files={"files": (f"small{i}.txt", small + b"%d" % i)})
                   for i in range(40)]
    codes = [a.status_code for a in answers]
    assert 3 <= codes.count(200) <= 7 and set(codes) == {200, 503}, codes
    assert "room for uploads (1 MB" in next(a.text for a in answers if a.status_code == 503)
    assert uploads_on_disk(folder) <= 2**20
    janitor = served.ctx.janitor
    lifetime, janitor.lifetime = janitor.lifetime, 0
    try:
        assert janitor.sweep() >= 3
    finally:
        janitor.lifetime = lifetime
    assert uploads_on_disk(folder) == 0


def test_the_time_budget_counts_preparing_the_data_and_stop_works_there_too(served, room, tmp_path):
    """A run still preparing its data (an upload: its caches are its own, so nothing is ready-made) when its time
    is up, or when its visitor presses Stop, ends at once with a message; the slot is free again."""
    words = "the model reads a text and learns to predict the next token of the text".split()
    text = tmp_path / "essay.txt"
    text.write_text("\n\n".join(" ".join(words[(i * 7 + j) % len(words)] for j in range(20)) for i in range(1500)))
    form = dict(tokenizer_type="bpe", vocab_size=2048, max_steps=5)
    a, b = visitor(served), visitor(served, **{"Accept-Language": "pt-BR"})
    with room.context() as short:  # a budget that has run out before the training process can be ready
        short.setattr(served.ctx, "limits", dataclasses.replace(served.ctx.limits, max_minutes=0.0001))
        a.predict(**short_run(text, **form), api_name="/train")
        status = follow(a, timeout=120)
    assert status["state"] == "failed" and "preparing the data took longer than the time limit" in status["error"]
    b.predict(**short_run(text, **form), api_name="/train")
    assert "Parado durante a preparação dos dados" in b.predict(api_name="/stop")
    status = follow(b, timeout=120)
    assert status["state"] == "failed" and "parado antes de o treino começar" in status["error"]
    assert not train_children() and not served.ctx.line.active()


def test_a_text_without_spaces_is_refused_for_bpe_before_it_is_queued(served, tmp_path):
    """One 120 kB "word" (the attack: a 5 MB line without spaces held the slot for half an hour)."""
    path = tmp_path / "one-line.txt"
    path.write_text("ab" * 60_000)
    with pytest.raises(AppError, match="more than 10,000 characters in a row without a space"):
        visitor(served).predict(**short_run(path, tokenizer_type="bpe"), api_name="/train")
    assert not served.ctx.line.active()


# -- Sign in with Hugging Face on a hosted Space ------------------------------------------------------------------


class HubRecorder:
    """Stands in for huggingface_hub.HfApi: records every call, answers like an empty account."""

    calls: list = []

    def __init__(self, token=None, **kwargs):
        self.token = token
        HubRecorder.calls.append(("HfApi", token))

    def __getattr__(self, name):
        def record(*args, **kwargs):
            if name == "upload_folder":  # what was uploaded, read while it exists (a GPT-2 export is temporary)
                folder = Path(kwargs["folder_path"])
                kwargs = {**kwargs, "files": sorted(p.name for p in folder.iterdir()),
                          "model_type": json.loads((folder / "config.json").read_text())["model_type"]}
            HubRecorder.calls.append((name, self.token, args, kwargs))
            if name == "repo_exists":
                return False
            if name == "create_repo":
                return SimpleNamespace(repo_id=args[0] if args else kwargs["repo_id"])
            return None
        return record


def test_pushes_use_the_visitors_own_login_never_the_owners_token(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    tokenizer = builtin_tokenizer(300)
    model = untrained_model("tiny", tokenizer)
    for name, owner in (("alice-run", "hf:alice"), ("bob-run", "hf:bob")):
        model.save_pretrained(runs / name)
        tokenizer.save_pretrained(runs / name)
        (runs / name / APP_RUN_FILE).write_text(f'{{"owner": "{owner_hash(owner)}", "preset": "tiny"}}')
    monkeypatch.setattr(huggingface_hub, "HfApi", HubRecorder)
    HubRecorder.calls = []
    with launched_app(tmp_path, env=SPACE_ENV) as (ctx, url):
        anonymous = local_client(url)
        alice = local_client(url, headers={"Cookie": signed_in_cookie("alice", "hf_alice_oauth")})
        assert visible_models(alice) == {*UNTRAINED_KEYS, "run/alice-run"}
        with pytest.raises(AppError, match="unknown model"):
            anonymous.predict("run/alice-run", "alice/minigpt", api_name="/push_to_hub")
        ctx.public_runs = True  # even where the run is visible, an anonymous visitor cannot push
        with pytest.raises(AppError, match="Sign in with Hugging Face"):
            anonymous.predict("run/alice-run", "alice/minigpt", api_name="/push_to_hub")
        ctx.public_runs = False
        assert HubRecorder.calls == []

        # signed in, but the login carries no token: refused, and nothing falls back to the owner's HF_TOKEN
        tokenless = local_client(url, headers={"Cookie": signed_in_cookie("alice", "")})
        with pytest.raises(AppError, match="Sign in with Hugging Face"):
            tokenless.predict("run/alice-run", "minigpt", api_name="/push_to_hub")
        assert HubRecorder.calls == []

        assert "alice/minigpt" in alice.predict("run/alice-run", "minigpt", api_name="/push_to_hub")
        assert "alice/minigpt-gpt2" in alice.predict("run/alice-run", "minigpt-gpt2", False, True,
                                                     api_name="/push_to_hub")  # as_gpt2
        with pytest.raises(AppError, match="is not yours: push to alice/"):
            alice.predict("run/alice-run", "owner/minigpt", api_name="/push_to_hub")
    tokens = {call[1] for call in HubRecorder.calls}
    assert tokens == {"hf_alice_oauth"}
    made = [c for c in HubRecorder.calls if c[0] == "create_repo"]
    assert [m[2][0] for m in made] == ["alice/minigpt", "alice/minigpt-gpt2"]
    assert all(m[3]["exist_ok"] is False for m in made)
    uploads = [c[3] for c in HubRecorder.calls if c[0] == "upload_folder"]
    assert [u["repo_id"] for u in uploads] == ["alice/minigpt", "alice/minigpt-gpt2"]
    assert uploads[0]["model_type"] == "minigpt" and "modeling_minigpt.py" in uploads[0]["files"]
    assert uploads[1]["model_type"] == "gpt2" and not any(f.endswith(".py") for f in uploads[1]["files"])


def test_without_a_visitors_token_nothing_goes_to_the_hub_on_a_space(tmp_path, monkeypatch):
    """The library's push and the training process on a Space: no fallback to the owner's HF_TOKEN."""
    monkeypatch.setenv("SPACE_ID", "owner/minigpt")
    monkeypatch.setenv("HF_TOKEN", SPACE_ENV["HF_TOKEN"])
    monkeypatch.setattr(huggingface_hub, "HfApi", HubRecorder)
    HubRecorder.calls = []
    for token in (None, ""):
        with pytest.raises(HubError, match="the Space owner's token is never used"):
            push_folder(str(tmp_path), "someone/minigpt", token)
    assert HubRecorder.calls == []

    monkeypatch.delenv("HF_HUB_DISABLE_IMPLICIT_TOKEN", raising=False)  # restored after the test
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_IMPLICIT_TOKEN", False)
    assert "authorization" in huggingface_hub.utils.build_hf_headers()  # the owner's token, implicitly
    hide_owner_token()  # what a training process does first on a Space
    assert "HF_TOKEN" not in os.environ and "authorization" not in huggingface_hub.utils.build_hf_headers()


def test_a_run_cut_off_by_a_killed_server_is_removed_at_start(tmp_path):
    runs = tmp_path / "runs"
    (runs / "20260101-000000-tiny-bpe").mkdir(parents=True)
    (runs / "20260101-000000-tiny-bpe" / "config.json").write_text("{}")
    (runs / ".20260101-000000-tiny-bpe.app-training").touch()
    (runs / ".20260101-000000-tiny-bpe.saving").mkdir()
    # a complete model that a training cut off by a kill wrote after the app was gone: no record of the app's
    tokenizer = builtin_tokenizer(300)
    model = untrained_model("tiny", tokenizer)
    for name in ("20260101-000001-tiny-char", "kept-by-train-py"):
        model.save_pretrained(runs / name)
        tokenizer.save_pretrained(runs / name)
    with started_context(tmp_path) as ctx:  # the app's start, without a server (nothing here needs one)
        assert sorted(p.name for p in runs.iterdir()) == [".app_secret", "kept-by-train-py"]
        assert not ctx.registry.runs()  # another program's folder is not listed


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_killing_the_app_leaves_no_process_and_no_model(tmp_path, corpus, monkeypatch):
    """kill -9 of `python app.py` while it trains leaves no process behind (the training, the fork server, the
    resource tracker) and no model; the next start removes the cut-off run and the killed app's temp folder."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("GRADIO_TEMP_DIR", "SPACE_ID", "HF_TOKEN")}
    env.update(TMPDIR=str(temp), MINIGPT_APP_RUNS=str(tmp_path / "runs"), MINIGPT_APP_PRETRAINED="",
               MINIGPT_APP_MODELS="", GRADIO_ANALYTICS_ENABLED="False", PYTHONPATH=str(REPO))
    port = free_port()
    env.update(GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port))  # Gradio's own address settings
    url = f"http://127.0.0.1:{port}/"
    with (tmp_path / "app.log").open("w") as log:
        app = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_up_to(lambda: answering(app, url), timeout=240, every=0.1)
        client = local_client(url)
        client.predict(**short_run(corpus, max_steps=100000), api_name="/train")
        fork_server = next(p for p in psutil.Process(app.pid).children() if "forkserver" in " ".join(p.cmdline()))
        wait_for(fork_server.children)  # the training process, busy preparing its data (or already training)
        family = psutil.Process(app.pid).children(recursive=True)
        assert len(family) >= 3  # the resource tracker, the fork server, the training
        app.kill()
        app.wait()
        wait_up_to(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in family), 30)
    finally:
        if app.poll() is None:
            app.kill()
    killed_temp = list(temp.glob("minigpt-app-*"))
    assert len(killed_temp) == 1  # SIGKILL leaves no chance to clean up: the next start does

    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    with started_context(tmp_path) as ctx:  # the next start (the server that follows removes nothing)
        assert [p.name for p in (tmp_path / "runs").iterdir()] == [".app_secret"]  # the cut-off run is gone
        assert list(temp.glob("minigpt-app-*")) == [ctx.tmp_dir]  # and the killed app's temp folder
        assert {e.key for e in ctx.registry.entries() if e.kind != "pretrained"} == UNTRAINED_KEYS  # no run offered


def answering(process, url: str) -> bool:
    assert process is None or process.poll() is None, f"the app at {url} ended"
    try:
        return httpx.get(url + "gradio_api/info", timeout=5, verify=False).status_code == 200
    except httpx.HTTPError:
        return False


def test_sigterm_is_a_clean_shutdown_that_leaves_no_temp_folder(tmp_path, corpus, monkeypatch):
    """app.main() as `python app.py` runs it (here in this process, to save a start): an upload, then SIGTERM;
    the upload was in the app's own temp folder, and that folder is gone."""
    import app

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv("GRADIO_TEMP_DIR", raising=False)  # the app's own temp folder, as on a Space
    monkeypatch.setenv("MINIGPT_APP_PRETRAINED", "")
    monkeypatch.setenv("MINIGPT_APP_MODELS", "")
    url = f"http://127.0.0.1:{(port := free_port())}/"
    monkeypatch.setattr(gradio.http_server, "INITIAL_PORT_VALUE", port)  # GRADIO_SERVER_PORT, read when imported
    uploads, app_temp = [], []

    def visit_then_terminate():
        try:
            wait_up_to(lambda: answering(None, url), timeout=120)
            uploads.append(httpx.post(url + "gradio_api/upload", files={"files": ("notes.txt", corpus.read_bytes())},
                                      verify=False))
            app_temp.extend(tmp_path.glob("minigpt-app-*"))
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    handler = signal.getsignal(signal.SIGTERM)
    visitor_thread = threading.Thread(target=visit_then_terminate)
    visitor_thread.start()
    try:
        app.main(["--runs-dir", str(tmp_path / "runs")])
    finally:
        signal.signal(signal.SIGTERM, handler)
        visitor_thread.join()
    assert uploads[0].status_code == 200 and len(app_temp) == 1  # Gradio's files in the app's own temp folder
    assert Path(uploads[0].json()[0]).is_relative_to(app_temp[0])
    assert not list(tmp_path.glob("minigpt-app-*"))
