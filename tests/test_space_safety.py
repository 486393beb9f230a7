"""The public Space under many anonymous visitors, through a real server and real gradio_client clients: runs
belong to their visitor, one training at a time with a line, the training in its own process (a crash there is a
failed run, not a dead app), budgets checked before anything is allocated, bounded disk, pushes only with the
visitor's own login."""

import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import huggingface_hub  # noqa: E402
from app_server import SPACE_ENV, launched_app, signed_in_cookie  # noqa: E402
from app_server import wait_for as wait_up_to  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from minigpt.loading import build_untrained  # noqa: E402
from space.registry import APP_RUN_FILE  # noqa: E402
from space.visitors import owner_hash  # noqa: E402

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


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("space")
    with launched_app(root, env={"MINIGPT_APP_MAX_RUNS": "3"}) as (ctx, url):
        yield SimpleNamespace(url=url, ctx=ctx, root=root)


def visitor(served, **headers) -> Client:
    return Client(served.url, verbose=False, download_files=str(served.root / "downloads"), headers=headers or None,
                  analytics_enabled=False)


def short_run(corpus, **overrides) -> dict:
    return dict(corpus_source="upload", files=[handle_file(str(corpus))], hub_dataset="", preset="tiny",
                tokenizer_type="char", vocab_size=300, length_unit="steps", max_steps=3, epochs=1, batch_size=4,
                learning_rate=3e-3, block_size=16, seed=1) | overrides


def state_of(client) -> dict:
    return client.predict(api_name="/training_status")


def app_runs(served) -> list[str]:
    return sorted(p.name for p in served.ctx.runs_dir.iterdir() if (p / APP_RUN_FILE).is_file())


# ----------------------------------------------------------------------------------------------------------------


def visible_models(client) -> set[str]:
    """The model keys a visitor is offered, less the pre-trained GPT-2s that every visitor is offered."""
    return {m["key"] for m in client.predict(api_name="/models") if m["kind"] != "pretrained"}


def test_only_the_owner_stops_a_run_and_the_next_visitor_waits_in_line(served, corpus):
    a, b, c = visitor(served), visitor(served), visitor(served)
    job_a = a.submit(**short_run(corpus, max_steps=5000), api_name="/train")
    wait_for(lambda: (state_of(a).get("step") or 0) >= 2)

    # B sees that a training runs and how far it is, but not A's text, samples or run
    seen_by_b = state_of(b)
    assert seen_by_b["state"] == "idle" and seen_by_b["line"]["training"] and seen_by_b["line"]["step"] >= 2
    assert "samples" not in seen_by_b and "run" not in seen_by_b
    assert "another visitor" in b.predict(api_name="/stop")
    time.sleep(2)
    assert state_of(a)["state"] == "running"

    # C waits in line, with a place and an estimated start; one training per visitor
    job_c = c.submit(**short_run(corpus), api_name="/train")
    queued = wait_for(lambda: (s := state_of(c))["state"] == "queued" and s)
    assert queued["position"] == 1 and queued["wait_seconds"] is not None
    with pytest.raises(AppError, match="already have a training"):
        c.predict(**short_run(corpus), api_name="/train")

    assert "Stop requested" in a.predict(api_name="/stop")
    job_a.result(timeout=400)
    assert state_of(a)["state"] == "stopped"
    job_c.result(timeout=400)
    status_c = state_of(c)
    assert status_c["state"] == "finished" and status_c["step"] == 3

    # each run is its visitor's: listed, generated with and downloaded in their own session only
    run_a, run_c = state_of(a)["model"], status_c["model"]
    models_a = {m["key"] for m in a.predict(api_name="/models")}
    assert run_a in models_a and run_c not in models_a
    assert visible_models(b) == {"untrained"}
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
    job = a.submit(**short_run(corpus, max_steps=5000), api_name="/train")
    wait_for(lambda: (state_of(a).get("step") or 0) >= 1)
    children = [p for p in multiprocessing.active_children() if p.name.startswith("minigpt-train-")]
    assert len(children) == 1 and children[0].pid != os.getpid()
    os.kill(children[0].pid, signal.SIGKILL)  # what the kernel's OOM killer does
    with pytest.raises(AppError, match="ended unexpectedly"):
        job.result(timeout=120)
    status = state_of(a)
    assert status["state"] == "failed" and "-9" in status["error"]
    assert a.predict(PROMPT, max_new_tokens=5, api_name="/generate").startswith(PROMPT)
    assert not any(p.name.startswith("2") and not (p / APP_RUN_FILE).exists() for p in served.ctx.runs_dir.iterdir())


def test_the_largest_form_settings_are_refused_before_any_memory_is_allocated(served, corpus):
    pt = visitor(served, **{"Accept-Language": "pt-BR"})
    rss = psutil.Process().memory_info().rss
    with pytest.raises(AppError, match=r"MINIGPT_APP_MAX_MEMORY_GB\)\. Diminua Tamanho do lote"):
        pt.predict(**short_run(corpus, **LARGEST), api_name="/train")
    assert psutil.Process().memory_info().rss - rss < 100 * 2**20
    assert not [p for p in multiprocessing.active_children() if p.name.startswith("minigpt-train-")]
    assert state_of(pt)["state"] == "idle"


def test_a_40_mb_prompt_is_refused_before_tokenizing(served):
    """Sent from another process (the server's memory is this process's): refused at the door, memory unchanged;
    a 100 kB prompt gets through the door and is refused by length, in words, before any tokenizer sees it."""
    code = ("import sys, time\nfrom gradio_client import Client\nc = Client(sys.argv[1], verbose=False)\n"
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


def test_only_the_newest_runs_are_kept(served, corpus):
    """MINIGPT_APP_MAX_RUNS=3: four more short runs (after the first test's two) leave the newest three."""
    a = visitor(served)
    made = []
    for _ in range(4):
        a.predict(**short_run(corpus, max_steps=1), api_name="/train")
        made.append(state_of(a)["model"].split("/", 1)[1])
    assert app_runs(served) == sorted(made[-3:])
    assert [e.name for e in served.ctx.registry.runs()] == made[:-4:-1]


def test_no_temp_folder_is_left_after_shutdown(tmp_path, corpus):
    with launched_app(tmp_path, own_temp=True) as (ctx, url):
        client = Client(url, verbose=False, analytics_enabled=False, download_files=str(tmp_path / "downloads"))
        with pytest.raises(AppError, match="Block size must be"):  # an upload that is refused
            client.predict(**short_run(corpus, block_size=4), api_name="/train")
        temp = ctx.tmp_dir
        assert Path(os.environ["GRADIO_TEMP_DIR"]).is_relative_to(temp) and temp.is_relative_to(tempfile.gettempdir())
    assert not temp.exists()


# -- Sign in with Hugging Face on a hosted Space ------------------------------------------------------------------


class HubRecorder:
    """Stands in for huggingface_hub.HfApi: records every call, answers like an empty account."""

    calls: list = []

    def __init__(self, token=None, **kwargs):
        self.token = token
        HubRecorder.calls.append(("HfApi", token))

    def __getattr__(self, name):
        def record(*args, **kwargs):
            HubRecorder.calls.append((name, self.token, args, kwargs))
            if name == "repo_exists":
                return False
            if name == "create_repo":
                return SimpleNamespace(repo_id=args[0] if args else kwargs["repo_id"])
            return None
        return record


def test_pushes_use_the_visitors_own_login_never_the_owners_token(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    model, tokenizer = build_untrained("tiny", 300)
    for name, owner in (("alice-run", "hf:alice"), ("bob-run", "hf:bob")):
        model.save_pretrained(runs / name)
        tokenizer.save_pretrained(runs / name)
        (runs / name / APP_RUN_FILE).write_text(f'{{"owner": "{owner_hash(owner)}", "preset": "tiny"}}')
    monkeypatch.setattr(huggingface_hub, "HfApi", HubRecorder)
    HubRecorder.calls = []
    with launched_app(tmp_path, env=SPACE_ENV) as (ctx, url):
        anonymous = Client(url, verbose=False, analytics_enabled=False)
        alice = Client(url, verbose=False, analytics_enabled=False,
                       headers={"Cookie": signed_in_cookie("alice", "hf_alice_oauth")})
        assert visible_models(alice) == {"untrained", "run/alice-run"}
        with pytest.raises(AppError, match="unknown model"):
            anonymous.predict("run/alice-run", "alice/minigpt", api_name="/push_to_hub")
        ctx.public_runs = True  # even where the run is visible, an anonymous visitor cannot push
        with pytest.raises(AppError, match="Sign in with Hugging Face"):
            anonymous.predict("run/alice-run", "alice/minigpt", api_name="/push_to_hub")
        ctx.public_runs = False
        assert HubRecorder.calls == []

        assert "alice/minigpt" in alice.predict("run/alice-run", "minigpt", api_name="/push_to_hub")
        with pytest.raises(AppError, match="is not yours: push to alice/"):
            alice.predict("run/alice-run", "owner/minigpt", api_name="/push_to_hub")
    tokens = {call[1] for call in HubRecorder.calls}
    assert tokens == {"hf_alice_oauth"}
    made = [c for c in HubRecorder.calls if c[0] == "create_repo"]
    assert len(made) == 1 and made[0][2][0] == "alice/minigpt" and made[0][3]["exist_ok"] is False
    assert [c[3]["repo_id"] for c in HubRecorder.calls if c[0] == "upload_folder"] == ["alice/minigpt"]


def test_a_run_cut_off_by_a_killed_server_is_removed_at_start(tmp_path):
    runs = tmp_path / "runs"
    (runs / "20260101-000000-tiny-bpe").mkdir(parents=True)
    (runs / "20260101-000000-tiny-bpe" / "config.json").write_text("{}")
    (runs / ".20260101-000000-tiny-bpe.app-training").touch()
    (runs / ".20260101-000000-tiny-bpe.saving").mkdir()
    (runs / "kept-by-train-py").mkdir()
    with launched_app(tmp_path) as (ctx, _):
        assert sorted(p.name for p in runs.iterdir()) == ["kept-by-train-py"]
