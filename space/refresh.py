"""What keeps every visitor's page current across tabs: the model dropdowns when runs are added, the training
panel on each visitor's timer tick and page load (their own job, or another visitor's progress without its
text), and the model list as an API."""

import gradio as gr

from space.context import AppContext
from space.tab_train import job_view, panel_for, run_choices, seen
from space.texts import request_lang
from space.visitors import visitor_id


def model_updates(ctx: AppContext, lang: str, viewer: str | None, select_run: str | None = None):
    """New choices for every model dropdown, in the order app.py lists them (generate, compare a and b,
    probabilities, the runs list): the models this viewer may use; values kept, except that the trainer's own
    session selects its new run."""
    plain = ctx.registry.choices(lang, viewer=viewer)
    with_latest = ctx.registry.choices(lang, with_latest=True, viewer=viewer)
    pick = {"value": select_run} if select_run else {}
    return (gr.Dropdown(choices=plain, **pick), gr.Dropdown(choices=with_latest),
            gr.Dropdown(choices=with_latest), gr.Dropdown(choices=plain, **pick),
            gr.Dropdown(choices=run_choices(ctx, lang, viewer), **pick))


def poll(ctx: AppContext, seen_job, seen_models, request: gr.Request, profile: gr.OAuthProfile | None = None):
    """Every visitor's timer: redraw the training panel when the job shown changed, refresh the model lists
    when a run was added or removed. Unchanged parts are skipped (nothing is sent)."""
    lang = request_lang(request)
    panel = [gr.skip()] * 4
    snap, note = panel_for(ctx, visitor_id(request, profile), lang)
    shown = seen(snap, shared=bool(note))
    if shown != seen_job:
        panel, seen_job = list(job_view(snap, lang, note)), shown
    models = [gr.skip()] * 5
    if ctx.registry.version != seen_models:
        models, seen_models = list(model_updates(ctx, lang, ctx.viewer(request, profile))), ctx.registry.version
    return (*panel, *models, seen_job, seen_models)


def on_load(ctx: AppContext, request: gr.Request, profile: gr.OAuthProfile | None = None):
    lang = request_lang(request)
    snap, note = panel_for(ctx, visitor_id(request, profile), lang)
    return (*job_view(snap, lang, note), *model_updates(ctx, lang, ctx.viewer(request, profile)),
            seen(snap, shared=bool(note)), ctx.registry.version)


def after_train(ctx: AppContext, request: gr.Request, profile: gr.OAuthProfile | None = None):
    job = ctx.line.job_of(visitor_id(request, profile))
    snap = job.snapshot() if job is not None else None
    select = snap.entry_key if snap is not None and snap.entry_key else None
    viewer = ctx.viewer(request, profile)
    return (*model_updates(ctx, request_lang(request), viewer, select_run=select), ctx.registry.version)


def list_models(ctx: AppContext, request: gr.Request, profile: gr.OAuthProfile | None = None) -> list[dict]:
    """The models you may use: key (pass it as `model`), kind, name, label and summary."""
    return [{"key": e.key, "kind": e.kind, "name": e.name, "label": e.label("en"),
             **{k: v for k, v in e.summary.items() if k != "owner"}}
            for e in ctx.registry.entries(ctx.viewer(request, profile))]
