"""Sharing a finished run on the Hugging Face Hub, with clear messages when that cannot work."""

import os
import tempfile
from pathlib import Path

import huggingface_hub
from huggingface_hub import get_token
from huggingface_hub.utils import filter_repo_objects


class HubError(RuntimeError):
    """The Hub cannot be used right now (no token, offline, no permission): one line saying what to do."""


def hub_token(token: str | None) -> str | None:
    """The token a Hub call goes out with: the one given; where none is, the local login (HF_TOKEN, `hf auth
    login`), except on a hosted Space (SPACE_ID set), where that login is the Space owner's: nothing is sent on
    their behalf (HubError)."""
    if token:
        return token
    if os.environ.get("SPACE_ID"):
        raise HubError("on a Hugging Face Space a push needs the visitor's own token (Sign in with Hugging Face); "
                       "the Space owner's token is never used")
    return get_token()


def check_hub_access(repo_id: str, token: str | None = None) -> str:
    """Fail fast, before any training: a token must exist and the Hub must answer. Returns the user name."""
    token = hub_token(token)
    if not token:
        raise HubError(f"cannot push to {repo_id!r}: no Hugging Face token; set HF_TOKEN or run `hf auth login`")
    try:
        return huggingface_hub.HfApi(token=token).whoami()["name"]
    except Exception as error:  # offline, DNS, HTTP 401...: all mean the same to the user
        raise HubError(f"cannot reach the Hugging Face Hub to push {repo_id!r} ({type(error).__name__}); "
                       "check the network and the token, or drop --push_to_hub") from None


# What never leaves a run folder, pushed to the Hub or downloaded from the app: checkpoints (optimizer state, and the
# Trainer's training_args.bin), pickles of any kind, hidden and temporary files.
NOT_SHARED = ["checkpoint-*", "checkpoint-*/**", "*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle", ".*", ".*/**",
              "*.tmp*"]


def shared_files(folder: Path) -> list[Path]:
    """The files of `folder` that leave it (a push, a download), chosen by huggingface_hub's own filter with
    NOT_SHARED, as upload_folder chooses them."""
    files = [path for path in sorted(folder.rglob("*")) if path.is_file() and not path.is_symlink()]
    return list(filter_repo_objects(files, ignore_patterns=NOT_SHARED, key=lambda p: p.relative_to(folder).as_posix()))


def push_folder(folder: str, repo_id: str, token: str | None = None, exist_ok: bool = True) -> str:
    """Upload a finished model directory (not its checkpoints, no pickles) to a model repo in one commit; returns
    the repo URL. exist_ok=False: only into a repo this call creates (an existing one is an error, never
    overwritten)."""
    token = hub_token(token)
    api = huggingface_hub.HfApi(token=token)
    try:
        repo = api.create_repo(repo_id, exist_ok=exist_ok, repo_type="model").repo_id
        api.upload_folder(folder_path=folder, repo_id=repo, commit_message="Upload MiniGPT", ignore_patterns=NOT_SHARED)
    except Exception as error:
        raise HubError(f"pushing {Path(folder).name} to {repo_id!r} failed ({type(error).__name__}: "
                       f"{str(error).splitlines()[0] if str(error) else ''}); the local copy is complete") from None
    return f"https://huggingface.co/{repo}"


def push_gpt2(folder: str, repo_id: str, token: str | None = None, exist_ok: bool = True) -> str:
    """push_folder for the GPT-2 form of the finished MiniGPT in `folder` (minigpt.export_gpt2: a plain
    GPT2LMHeadModel that loads without remote code), exported beside it and deleted after the push."""
    from minigpt.export_gpt2 import ExportError, export_gpt2

    with tempfile.TemporaryDirectory(prefix=".gpt2-", dir=Path(folder).absolute().parent) as tmp:
        try:
            exported = export_gpt2(folder, Path(tmp) / repo_id.split("/")[-1])  # the card's title: the repo's name
        except ExportError as error:
            raise HubError(f"cannot push the GPT-2 form of {Path(folder).name}: {error}") from None
        return push_folder(str(exported), repo_id, token, exist_ok)
