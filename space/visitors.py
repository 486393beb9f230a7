"""Who is asking: a visitor is their Hugging Face user when signed in, else their Gradio session (one browser
tab, one gradio_client Client). Runs store a hash of it, never the session id itself."""

import hashlib

import gradio as gr


def visitor_id(request: gr.Request | None, profile: gr.OAuthProfile | None = None) -> str:
    if profile is not None and getattr(profile, "username", None):
        return f"hf:{profile.username}"
    session = getattr(request, "session_hash", None) if request is not None else None
    return f"session:{session or 'anonymous'}"


def owner_hash(visitor: str) -> str:
    return hashlib.sha256(visitor.encode()).hexdigest()[:16]
