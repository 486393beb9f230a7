"""Pushing a visitor's run to the Hub, with the visitor's own login.

On a hosted Space (SPACE_ID set) the token is the visitor's, from Sign in with Hugging Face (gr.OAuthToken), and
the repository must be in their own namespace: the owner's HF_TOKEN secret never serves a visitor. On one's own
machine the local token (HF_TOKEN or `hf auth login`) may be used, into its user's or organisations' namespaces.
An existing repository is written to only when the visitor ticks "overwrite"."""

import huggingface_hub
from huggingface_hub import get_token

from minigpt.hub import HubError, push_folder, push_gpt2
from space.job_inputs import HUB_NAME
from space.texts import WHAT, app_error, fmt_int, msg


def _login(ctx, lang: str, profile, oauth_token) -> tuple[str, list[str]]:
    """(token, namespaces the visitor may push to), or a visible error; no Hub call on a Space."""
    if ctx.on_space:  # the visitor's own token or nothing: never a fallback to the owner's (minigpt.hub)
        if not getattr(oauth_token, "token", None) or profile is None or not getattr(profile, "username", None):
            raise app_error(lang, msg(lang, "sign_in"))
        return oauth_token.token, [profile.username]
    token = ctx.hf_token or get_token()
    if not token:
        raise app_error(lang, msg(lang, "no_token"))
    try:
        me = huggingface_hub.HfApi(token=token).whoami()
    except Exception as error:  # offline, DNS, HTTP 401...: all mean the same to the visitor
        raise app_error(lang, msg(lang, "hub_unreachable", error=type(error).__name__)) from None
    return token, [me["name"], *(org["name"] for org in me.get("orgs", []) if org.get("name"))]


def push_run(ctx, lang: str, folder: str, repo_id: str, overwrite: bool, profile, oauth_token,
             as_gpt2: bool = False) -> str:
    """Push `folder` (as_gpt2: its GPT-2 form) to the visitor's repo `repo_id` ("name" alone: their own namespace);
    returns its URL."""
    repo_id = (repo_id or "").strip()
    if len(repo_id) > 200:
        raise app_error(lang, msg(lang, "too_long", what=WHAT[lang]["repo_id"], n=fmt_int(len(repo_id), lang),
                                  limit=fmt_int(200, lang)))
    token, namespaces = _login(ctx, lang, profile, oauth_token)
    if repo_id and "/" not in repo_id:
        repo_id = f"{namespaces[0]}/{repo_id}"
    if not HUB_NAME.match(repo_id) or "/" not in repo_id:
        raise app_error(lang, msg(lang, "need_repo"))
    if repo_id.split("/")[0] not in namespaces:
        raise app_error(lang, msg(lang, "not_your_namespace", repo=repo_id, user=namespaces[0]))
    api = huggingface_hub.HfApi(token=token)
    try:
        exists = api.repo_exists(repo_id, repo_type="model")
    except Exception as error:
        raise app_error(lang, msg(lang, "hub_unreachable", error=type(error).__name__)) from None
    if exists and not overwrite:
        raise app_error(lang, msg(lang, "repo_exists", repo=repo_id))
    try:
        return (push_gpt2 if as_gpt2 else push_folder)(folder, repo_id, token, exist_ok=bool(overwrite))
    except HubError as error:
        raise app_error(lang, msg(lang, "push_failed", repo=repo_id, error=error)) from None
