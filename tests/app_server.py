"""The real app, launched on a free local port for a test module (gradio_client and browser tests)."""

import contextlib
from pathlib import Path

import pytest

import app
from space.context import AppContext


@contextlib.contextmanager
def launched_app(root: Path, env: dict | None = None, **context_kwargs):
    """Yield (AppContext, url) of a running app whose runs and temp files live under root; stop it after (the
    training stops, the app's temp folder goes). `env`: more environment variables while it runs."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_TEMP_DIR", str(root / "gradio"))
        mp.setenv("MINIGPT_APP_MODELS", "")
        for name, value in (env or {}).items():
            mp.setenv(name, value)
        ctx = AppContext(runs_dir=root / "runs", **{"hf_token": "", **context_kwargs})
        demo = app.build_demo(ctx)
        try:
            _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **app.launch_kwargs(ctx))
            yield ctx, url
        finally:
            demo.close()
            ctx.close()
