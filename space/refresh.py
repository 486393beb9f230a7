"""What keeps every visitor's page current across tabs: the model dropdowns when runs are added, the training
panel on each visitor's timer tick and page load, and the model list as an API."""

import gradio as gr

from space.context import AppContext
from space.tab_train import job_view, run_choices, seen
from space.texts import request_lang


def model_updates(ctx: AppContext, lang: str, select_run: str | None = None):
    """New choices for every model dropdown, in the order app.py lists them (generate, compare a and b,
    probabilities, the runs list); values kept, except that the trainer's own session selects its new run."""
    plain = ctx.registry.choices(lang)
    with_latest = ctx.registry.choices(lang, with_latest=True)
    pick = {"value": select_run} if select_run else {}
    return (gr.Dropdown(choices=plain, **pick), gr.Dropdown(choices=with_latest),
            gr.Dropdown(choices=with_latest), gr.Dropdown(choices=plain, **pick),
            gr.Dropdown(choices=run_choices(ctx, lang), **pick))


def poll(ctx: AppContext, seen_job, seen_models, request: gr.Request):
    """Every visitor's timer: redraw the training panel when the job changed, refresh the model lists when
    a run was added. Unchanged parts are skipped (nothing is sent)."""
    lang = request_lang(request)
    job = ctx.board.current
    panel = [gr.skip()] * 4
    if job is not None:
        snap = job.snapshot()
        if seen(snap) != seen_job:
            panel, seen_job = list(job_view(snap, lang)), seen(snap)
    models = [gr.skip()] * 5
    if ctx.registry.version != seen_models:
        models, seen_models = list(model_updates(ctx, lang)), ctx.registry.version
    return (*panel, *models, seen_job, seen_models)


def on_load(ctx: AppContext, request: gr.Request):
    lang = request_lang(request)
    job = ctx.board.current
    snap = job.snapshot() if job is not None else None
    return (*job_view(snap, lang), *model_updates(ctx, lang), seen(snap), ctx.registry.version)


def after_train(ctx: AppContext, request: gr.Request):
    job = ctx.board.current
    snap = job.snapshot() if job is not None else None
    select = snap.entry_key if snap is not None and snap.entry_key else None
    return (*model_updates(ctx, request_lang(request), select_run=select), ctx.registry.version)


def list_models(ctx: AppContext) -> list[dict]:
    """Every model offered: key (pass it as `model`), kind, name, label and summary."""
    return [{"key": e.key, "kind": e.kind, "name": e.name, "label": e.label("en"), **e.summary}
            for e in ctx.registry.entries()]
