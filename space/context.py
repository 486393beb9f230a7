"""The app's state: its folders, upload limit, Hub token, the models it offers and the training slot."""

import logging
import os
import tempfile
from pathlib import Path

from space.jobs import JobBoard
from space.registry import ModelError, ModelRegistry
from space.texts import PRETRAINED_SUGGESTED, app_error

logger = logging.getLogger("minigpt.app")


class AppContext:
    def __init__(self, runs_dir: str | Path | None = None, model_dirs=(), max_upload_mb: float | None = None,
                 hf_token: str | None = None, untrained_preset: str = "tiny", pretrained=None):
        self.runs_dir = Path(runs_dir or os.environ.get("MINIGPT_APP_RUNS") or "runs/app").resolve()
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir = Path(tempfile.mkdtemp(prefix="minigpt-app-"))  # uploads and zips; inside the temp dir
        self.max_upload_mb = float(max_upload_mb or os.environ.get("MINIGPT_APP_MAX_UPLOAD_MB") or 5)
        self.hf_token = hf_token if hf_token is not None else os.environ.get("HF_TOKEN")
        env_dirs = [d for d in os.environ.get("MINIGPT_APP_MODELS", "").split(os.pathsep) if d.strip()]
        if pretrained is None:  # Hub names or GPT-2 folders, separated by commas; loaded only when picked
            names = os.environ.get("MINIGPT_APP_PRETRAINED")
            pretrained = names.split(",") if names is not None else PRETRAINED_SUGGESTED
        self.registry = ModelRegistry(self.runs_dir, untrained_preset=untrained_preset,
                                      pretrained=[name for name in pretrained if name.strip()])
        self.model_dir_errors = []
        for folder in [*model_dirs, *env_dirs]:
            try:
                self.registry.add_dir(folder)
            except ModelError as error:
                logger.warning("not offered: %s", error)
                self.model_dir_errors.append(str(error))
        self.board = JobBoard()

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


def get_model(ctx: AppContext, key: str, lang: str = "en"):
    try:
        return ctx.registry.get(key)
    except ModelError as error:
        raise app_error(lang, str(error)) from None
