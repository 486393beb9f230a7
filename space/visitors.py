"""Who is asking, and from where.

A visitor is their Hugging Face user when signed in; else the unguessable id their browser keeps (gr.BrowserState,
made at their first visit: a reload or a new tab of the same browser is the same visitor, another browser or a
private window is another); else, for a script without a browser, its Gradio session (one gradio_client Client).
Runs store a hash of the visitor, never the id itself.

A client is the network address a request comes from: on a Space the address its proxy reports (the last entry
of X-Forwarded-For, the one the proxy appended: a forged header only adds entries before it), elsewhere the
socket's peer. Caps per client keep one script posing as many visitors from taking every place.
"""

import hashlib
import os
import re
import secrets
from pathlib import Path

import gradio as gr

BROWSER_ID = re.compile(r"^[A-Za-z0-9_-]{32,64}$")  # what new_browser_id() makes: 192 random bits
SECRET_FILE = ".app_secret"  # in the runs folder: the browsers' stored ids stay readable after a restart


def new_browser_id() -> str:
    return secrets.token_urlsafe(24)


def visitor_id(request: gr.Request | None, profile: gr.OAuthProfile | None = None,
               browser_id: str | None = None) -> str:
    if profile is not None and getattr(profile, "username", None):
        return f"hf:{profile.username}"
    if isinstance(browser_id, str) and BROWSER_ID.match(browser_id):
        return f"browser:{browser_id}"
    session = getattr(request, "session_hash", None) if request is not None else None
    return f"session:{session or 'anonymous'}"


def owner_hash(visitor: str) -> str:
    return hashlib.sha256(visitor.encode()).hexdigest()[:16]


def client_address(request, behind_proxy: bool) -> str:
    """The address `request` (a gr.Request or a Starlette request) comes from; `behind_proxy`: on a Space."""
    if request is None:
        return "local"
    if behind_proxy:
        forwarded = (request.headers.get("x-forwarded-for") or "").split(",")[-1].strip()
        if forwarded:
            return forwarded
    client = getattr(request, "client", None)
    return getattr(client, "host", None) or "unknown"


def app_secret(runs_dir: Path) -> str:
    """The key gr.BrowserState encrypts the visitor's id with in their browser: MINIGPT_APP_SECRET, or one made
    once and kept in the runs folder (a new key would make every returning visitor a stranger)."""
    if os.environ.get("MINIGPT_APP_SECRET"):
        return os.environ["MINIGPT_APP_SECRET"]
    path = runs_dir / SECRET_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    mine = path.with_name(f"{SECRET_FILE}.{os.getpid()}")
    mine.write_text(secrets.token_urlsafe(32))
    mine.chmod(0o600)
    try:
        os.link(mine, path)  # whole or not at all; another app on the same folder may have made it first
    except FileExistsError:
        pass
    finally:
        mine.unlink()
    return path.read_text().strip()
