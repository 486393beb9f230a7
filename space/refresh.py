"""What keeps every visitor's page current across tabs: who the visitor is (their browser's id, made at the first
visit), the model dropdowns when runs are added or removed, the training panel on each page's timer tick and on
page load (their own job, or another visitor's progress without its text), and the model list as an API."""

import gradio as gr

from minigpt.corpus import BUILTIN_CORPORA
from space.context import AppContext
from space.registry import UNTRAINED, untrained_key
from space.tab_train import job_view, panel_for, run_choices, seen
from space.texts import request_lang
from space.visitors import BROWSER_ID, new_browser_id, visitor_id


# The model dropdowns every page refreshes, by name: app.py lists them in this order as the handlers' outputs
MODEL_DROPDOWNS = ("generate", "compare_a", "compare_b", "probabilities", "runs")


def model_updates(ctx: AppContext, lang: str, viewer: str | None, select_run: str | None = None) -> list:
    """New choices for every model dropdown, in MODEL_DROPDOWNS' order: the models this viewer may use; values
    kept, except that `select_run` (the visitor's newly finished run) is selected."""
    plain = ctx.registry.choices(lang, viewer=viewer)
    with_latest = ctx.registry.choices(lang, with_latest=True, viewer=viewer)
    pick = {"value": select_run} if select_run else {}
    updates = {"generate": gr.Dropdown(choices=plain, **pick), "compare_a": gr.Dropdown(choices=with_latest),
               "compare_b": gr.Dropdown(choices=with_latest), "probabilities": gr.Dropdown(choices=plain, **pick),
               "runs": gr.Dropdown(choices=run_choices(ctx, lang, viewer), **pick)}
    return [updates[name] for name in MODEL_DROPDOWNS]


def untrained_for_corpus(corpus, *values) -> tuple:
    """The model dropdowns (their values) that show an untrained model follow the Train tab's corpus: the
    untrained model with that corpus's tokenizer, never one of another language beside it. An upload or a Hub
    corpus changes nothing (its tokenizer does not exist before its run)."""
    follow = corpus in BUILTIN_CORPORA
    return tuple(untrained_key(corpus) if follow and str(value or "").startswith(UNTRAINED) else gr.skip()
                 for value in values)


def poll(ctx: AppContext, seen_job, seen_models, browser_id, request: gr.Request,
         profile: gr.OAuthProfile | None = None):
    """Every page's timer: redraw the training panel when the job shown changed, refresh the model lists when a
    run was added or removed (and select the visitor's own run when it has just finished). Unchanged parts are
    skipped (nothing is sent)."""
    lang = request_lang(request)
    ctx.line.tick()
    panel = [gr.skip()] * 4
    snap, note = panel_for(ctx, visitor_id(request, profile, browser_id), lang)
    shown = seen(snap, shared=bool(note))
    finished_now = None
    if shown != seen_job:
        panel, seen_job = list(job_view(snap, lang, note)), shown
        finished_now = snap.entry_key if snap is not None and not note and snap.done else None
    models = [gr.skip()] * len(MODEL_DROPDOWNS)
    if ctx.registry.version != seen_models or finished_now:
        viewer = ctx.viewer(request, profile, browser_id)
        models, seen_models = model_updates(ctx, lang, viewer, finished_now), ctx.registry.version
    return (*panel, *models, seen_job, seen_models)


def on_load(ctx: AppContext, stored_id, request: gr.Request, profile: gr.OAuthProfile | None = None):
    """A page opens: the visitor's id from their browser's storage (a new one at their first visit, kept there
    for the next), their training panel and model lists."""
    browser_id = stored_id if isinstance(stored_id, str) and BROWSER_ID.match(stored_id) else new_browser_id()
    lang = request_lang(request)
    snap, note = panel_for(ctx, visitor_id(request, profile, browser_id), lang)
    select = snap.entry_key if snap is not None and not note and snap.done else None
    models = model_updates(ctx, lang, ctx.viewer(request, profile, browser_id), select)
    return (*job_view(snap, lang, note), *models, seen(snap, shared=bool(note)), ctx.registry.version, browser_id,
            browser_id)


def list_models(ctx: AppContext, request: gr.Request, profile: gr.OAuthProfile | None = None) -> list[dict]:
    """The models you may use: key (pass it as `model`), kind, name, label and summary."""
    return [{"key": e.key, "kind": e.kind, "name": e.name, "label": e.label("en"),
             **{k: v for k, v in e.summary.items() if k != "owner"}}
            for e in ctx.registry.entries(ctx.viewer(request, profile))]
