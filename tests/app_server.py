"""The real app, launched on a free local port for a test module (gradio_client and browser tests)."""

import base64
import contextlib
import hashlib
import json
import time
from pathlib import Path

import gradio.oauth
import pytest
from gradio_client import Client
from itsdangerous import TimestampSigner

import app
from space.context import AppContext

# A hosted Space as the app sees it: SPACE_ID and the OAuth variables that Spaces set with `hf_oauth: true`
# (dummies: nothing here talks to huggingface.co), and the owner's HF_TOKEN secret that must never be used.
SPACE_ENV = {"SYSTEM": "spaces", "SPACE_ID": "owner/minigpt", "HF_TOKEN": "hf_owner_secret_token", "OAUTH_CLIENT_ID": "test-client",
             "OAUTH_CLIENT_SECRET": "test-secret", "OAUTH_SCOPES": "openid profile write-repos manage-repos",
             "OPENID_PROVIDER_URL": "https://huggingface.co"}


@contextlib.contextmanager
def started_context(root: Path, env: dict | None = None, **context_kwargs):
    """Yield the AppContext that `python app.py` builds first (app.main), whose runs and Gradio's files live under
    root; its start removes what a killed app left. Closed after (the training stops, the app's temp folder goes).
    `env`: more environment variables meanwhile."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_TEMP_DIR", str(root / "gradio"))
        mp.setenv("MINIGPT_APP_MODELS", "")
        for name, value in (env or {}).items():
            mp.setenv(name, value)
            if hasattr(gradio.oauth, name):  # gradio.oauth reads these when it is imported
                mp.setattr(gradio.oauth, name, value)
        ctx = AppContext(runs_dir=root / "runs", **{"hf_token": "" if not env else None, **context_kwargs})
        try:
            yield ctx
        finally:
            ctx.close()


@contextlib.contextmanager
def launched_app(root: Path, env: dict | None = None, **context_kwargs):
    """Yield (AppContext, url) of a running app built by started_context (the same arguments); stop it after."""
    with started_context(root, env, **context_kwargs) as ctx:
        demo = app.build_demo(ctx)
        try:
            _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **app.launch_kwargs(ctx))
            yield ctx, url
        finally:
            demo.close()


def local_client(url: str, **kwargs) -> Client:
    """A gradio_client for one of the tests' own servers (plain http on 127.0.0.1). ssl_verify=False: otherwise each
    of its requests (a predict makes two or three) builds an SSL context from the CA bundle, ~30 ms of CPU each."""
    return Client(url, verbose=False, analytics_enabled=False, ssl_verify=False, **kwargs)


def served_client(served, **headers) -> Client:
    """A visitor of the module's app (`served`: its url and root), with these request headers."""
    return local_client(served.url, download_files=str(served.root / "downloads"), headers=headers or None)


def signed_in_cookie(username: str, token: str, secret: str = SPACE_ENV["OAUTH_CLIENT_SECRET"]) -> str:
    """The session cookie that Sign in with Hugging Face leaves after a login (signed as gradio.oauth signs it):
    a test visitor 'logged in' without any call to huggingface.co."""
    info = {"access_token": token, "token_type": "bearer", "scope": SPACE_ENV["OAUTH_SCOPES"],
            "expires_at": int(time.time()) + 3600,
            "userinfo": {"sub": "1", "name": username, "preferred_username": username,
                         "profile": f"https://huggingface.co/{username}", "picture": "", "website": ""}}
    key = hashlib.sha256((secret + "-v4").encode()).hexdigest()
    data = base64.b64encode(json.dumps({"oauth_info": info}).encode())
    return "session=" + TimestampSigner(key).sign(data).decode()


def wait_for(condition, timeout: float = 120.0, every: float = 0.25):
    """Poll `condition` until it returns something truthy (returned), or fail the test after `timeout` seconds.
    The pause between polls grows from 10 ms to `every`: what comes soon is seen soon, a long wait polls seldom."""
    end, pause = time.time() + timeout, min(0.01, every)
    while time.time() < end:
        value = condition()
        if value:
            return value
        time.sleep(pause)
        pause = min(every, pause * 1.5)
    raise AssertionError("timed out")


def follow(client, timeout: float = 400.0) -> dict:
    """Poll the client's /training_status until its training has ended; returns the last status."""
    def ended():
        status = client.predict(api_name="/training_status")
        return status if status["state"] in ("finished", "stopped", "failed") else None

    return wait_for(ended, timeout)
