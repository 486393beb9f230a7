"""The app's state: its folders and limits, whether it is a hosted Space, the models it offers, the training line
and the shares of the generation slots."""

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import psutil

from space.budget import Limits
from space.fair_share import FairShare
from space.lifeline import alive, training_context
from space.registry import ModelError, ModelRegistry
from space.run_files import remove_unfinished_runs, train_and_keep
from space.texts import PRETRAINED_SUGGESTED, app_error
from space.training_line import TrainingLine
from space.uploads import UploadJanitor, zips_folder
from space.visitors import app_secret, client_address, owner_hash, visitor_id

logger = logging.getLogger("minigpt.app")

TEMP_PREFIX = "minigpt-app-"
TEMP_OWNER_FILE = "owner.json"  # the app's pid and start time, so that a later app can tell it is gone
GENERATIONS_PER_VISITOR = 4  # generations (and probability views) at once, of GENERATE_CONCURRENCY slots
GENERATIONS_PER_CLIENT = 6


class AppContext:
    """on_space: a hosted Space (SPACE_ID set): pushes only with the visitor's own Hugging Face login, never the
    owner's HF_TOKEN, and visitors' addresses from the proxy. public_runs: every visitor sees every run (a
    classroom); else each sees their own."""

    def __init__(self, runs_dir: str | Path | None = None, model_dirs=(), max_upload_mb: float | None = None,
                 hf_token: str | None = None, untrained_preset: str = "tiny", public_runs: bool | None = None,
                 limits: Limits | None = None, pretrained=None):
        self.runs_dir = Path(runs_dir or os.environ.get("MINIGPT_APP_RUNS") or "runs/app").resolve()
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.on_space = bool(os.environ.get("SPACE_ID"))
        self.public_runs = (public_runs if public_runs is not None
                            else os.environ.get("MINIGPT_APP_PUBLIC_RUNS", "").lower() in ("1", "true", "yes"))
        self.limits = limits or Limits.from_env()
        self.secret = app_secret(self.runs_dir)
        for folder in remove_abandoned_temp_dirs():
            logger.warning("removed %s: the app that used it was killed", folder)
        self.tmp_dir = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))  # uploads; removed by close()
        process = psutil.Process()
        (self.tmp_dir / TEMP_OWNER_FILE).write_text(json.dumps({"pid": process.pid, "started": process.create_time()}))
        # Gradio's cached uploads and downloads too, unless GRADIO_TEMP_DIR says otherwise (read by the Blocks)
        os.environ.setdefault("GRADIO_TEMP_DIR", str(self.tmp_dir / "gradio"))
        self.max_upload_mb = float(max_upload_mb or os.environ.get("MINIGPT_APP_MAX_UPLOAD_MB") or 5)
        # The owner's token serves the owner's pushes on their own machine only.
        self.hf_token = None if self.on_space else (hf_token if hf_token is not None else os.environ.get("HF_TOKEN"))
        for name in remove_unfinished_runs(self.runs_dir):
            logger.warning("removed %s: its training was cut off when the app last stopped", name)
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
        self.training_context = training_context()  # the fork server starts now, from this thread
        self.line = TrainingLine(lambda job: train_and_keep(self, job), self.limits.max_waiting,
                                 self.limits.max_minutes * 60, self.limits.max_waiting_per_client)
        self.generations = FairShare(GENERATIONS_PER_VISITOR, GENERATIONS_PER_CLIENT)
        self.janitor = UploadJanitor()

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def client(self, request) -> str:
        return client_address(request, behind_proxy=self.on_space)

    def viewer(self, request, profile=None, browser_id: str | None = None) -> str | None:
        """The registry's viewer for this request: the visitor's owner hash; "" (only the models nobody owns) for
        no request, as in the page's first drawing; None (every run) when runs are public."""
        if self.public_runs:
            return None
        return owner_hash(visitor_id(request, profile, browser_id)) if request is not None else ""

    def close(self) -> None:
        """Clean shutdown: the training stops (its model is saved), the app's temp folder and zips go."""
        self.janitor.close()
        self.line.close()
        shutil.rmtree(zips_folder(), ignore_errors=True)
        shutil.rmtree(self.tmp_dir, ignore_errors=True)


def remove_abandoned_temp_dirs() -> list[Path]:
    """The temp folders of apps that were killed (SIGKILL leaves no chance to clean up): their owner is gone."""
    removed = []
    for folder in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*"):
        try:
            owner = json.loads((folder / TEMP_OWNER_FILE).read_text())
            gone = not alive(owner["pid"]) or psutil.Process(owner["pid"]).create_time() != owner["started"]
        except psutil.Error:
            gone = True
        except (OSError, ValueError, KeyError):  # no record: an app from before this rule, or one starting now
            continue
        if gone:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def get_model(ctx: AppContext, key: str, lang: str = "en", viewer: str | None = None):
    try:
        return ctx.registry.get(key, viewer)
    except ModelError as error:
        raise app_error(lang, str(error)) from None
