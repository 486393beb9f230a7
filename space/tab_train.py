"""The Train tab: corpus and settings, Start / Stop, the live training panel, download and push of finished runs.

Handlers are module-level functions of the app's context (bound with space.binding.bind in build_train_tab), so
tests can call them without a server.
"""

import shutil
import tempfile
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from minigpt.export_gpt2 import ExportError, export_gpt2
from space.binding import bind
from space.context import AppContext
from space.hub_push import push_run
from space.job_inputs import APP_PRESETS, OVERFIT_FORM, TrainForm, forget_uploads, prepare_job
from space.job_views import error_text, md_inline, plot_frames, samples_html, status_html
from space.jobs import JobSnapshot
from space.one_step_panel import build_one_step_panel
from space.registry import LATEST, ModelError
from space.run_files import RunsFull, check_room, make_zip
from space.texts import MESSAGES, UI_EN, VISITOR_CORPUS, T, app_error, msg, request_lang
from space.training_line import AlreadyInLine, ClientBusy, LineFull
from space.visitors import visitor_id

def seen(snap: JobSnapshot | None, shared: bool = False) -> str:
    """What a page has drawn: its timer skips a job version that it already showed. `shared`: another visitor's
    job, seen from outside."""
    return f"{snap.id}:{snap.version}:{shared:d}" if snap is not None else ""


def job_view(snap: JobSnapshot | None, lang: str, note: str | None = None):
    """The training panel's four outputs: status HTML, loss plot, perplexity plot, samples."""
    frames = plot_frames(snap, lang)
    m = MESSAGES[lang]
    curve_colors = {m["train"]: "#2563eb", m["validation"]: "#ea580c", m["turn"]: "#6b7280"}
    if frames is None:
        plots = (gr.skip(), gr.skip())
    else:
        plots = tuple(
            gr.LinePlot(value=frame, x_title=m["col_step"], y_title=m[name], color_title=m["legend_split"],
                        color_map=curve_colors, x_axis_format="d", y_axis_format=axis_format(frame["value"]))
            for frame, name in zip(frames, ("loss", "perplexity"))
        )
    return (status_html(snap, lang, note), *plots, samples_html(snap, lang))


def axis_format(values) -> str | None:
    """A plot axis's number format: whole numbers (no separator to get wrong: the browser's plot writes numbers
    the English way only) when the values span 3 or more; else Vega's own, with decimals."""
    values = values.dropna()
    return "d" if len(values) and values.max() - values.min() >= 3 else None


def corpus_for_visitor(request: gr.Request = None) -> str:
    """The built-in corpus in the visitor's language, chosen when the page loads (they can switch)."""
    return VISITOR_CORPUS[request_lang(request)]


def run_choices(ctx: AppContext, lang: str, viewer: str | None) -> list[tuple[str, str]]:
    return [(e.label(lang), e.key) for e in ctx.registry.runs(viewer)]


# -- handlers ---------------------------------------------------------------------------------------------------

def panel_for(ctx: AppContext, visitor: str, lang: str):
    """(snapshot, note) of what this visitor's training panel shows: their own job (queued, running or done);
    else another visitor's running job, public parts only; else nothing. Looking keeps a waiting job's place."""
    mine = ctx.line.job_of(visitor)
    if mine is not None:
        mine.seen()
    if mine is not None and (mine.active or mine.snapshot().error not in ("left",)):
        return mine.snapshot(), None
    current = ctx.line.current
    if current is not None and current.active and current.state != "queued":
        return current.snapshot().public(), msg(lang, "others_training", waiting=ctx.line.waiting())
    return None, None


def refusal(ctx: AppContext, lang: str, error: Exception) -> gr.Error:
    """Why the line did not take a job, in the visitor's words."""
    if isinstance(error, AlreadyInLine):
        return app_error(lang, msg(lang, "already_in_line"))
    if isinstance(error, ClientBusy):
        return app_error(lang, msg(lang, "client_busy", n=ctx.line.max_per_client))
    if isinstance(error, RunsFull):
        return app_error(lang, msg(lang, "runs_full", n=ctx.limits.max_runs))
    return app_error(lang, msg(lang, "line_full", n=ctx.line.waiting()))


def train(ctx: AppContext, corpus_source, files, hub_dataset, preset, tokenizer_type, vocab_size, length_unit,
          max_steps, epochs, minutes, batch_size, learning_rate, block_size, seed, overfit=False, early_stopping=False,
          browser_id: str | None = None, request: gr.Request = None, profile: gr.OAuthProfile | None = None):
    """Queue a training and answer at once: the panel shows it starting, or your place in line and an estimated
    start (one training runs at a time for the whole app), or an error that says why not. Follow it with
    /training_status (a waiting training whose visitor stops looking for a few minutes leaves the line).
    overfit: train on a small excerpt of the built-in corpus until validation loss turns up (minigpt.overfitting);
    early_stopping: stop once validation loss has not improved for 3 evaluations and keep the best model."""
    lang = request_lang(request)
    visitor = visitor_id(request, profile, browser_id)
    # Gradio passes the form's inputs in order: named here, once
    form = TrainForm(corpus_source=corpus_source, files=files, hub_dataset=hub_dataset, preset=preset,
                     tokenizer_type=tokenizer_type, vocab_size=vocab_size, length_unit=length_unit,
                     max_steps=max_steps, epochs=epochs, minutes=minutes, batch_size=batch_size,
                     learning_rate=learning_rate, block_size=block_size, seed=seed, overfit=bool(overfit),
                     early_stopping=bool(early_stopping))
    try:
        mine = ctx.line.job_of(visitor)
        if mine is not None and mine.active:
            raise refusal(ctx, lang, AlreadyInLine())
        job = prepare_job(ctx, lang, visitor, form, client=ctx.client(request))
    finally:
        forget_uploads(files)
    try:
        check_room(ctx, visitor)
        ctx.line.submit(job)
    except (AlreadyInLine, ClientBusy, LineFull, RunsFull) as error:
        shutil.rmtree(job.cleanup, ignore_errors=True)
        raise refusal(ctx, lang, error) from None
    snap = job.snapshot()
    return (*job_view(snap, lang), seen(snap))


def stop(ctx: AppContext, browser_id: str | None = None, request: gr.Request = None,
         profile: gr.OAuthProfile | None = None):
    """Stop your own training at the next step (the model is saved and usable), or leave the line."""
    lang = request_lang(request)
    job = ctx.line.job_of(visitor_id(request, profile, browser_id))
    if job is None or not job.active:
        current = ctx.line.current
        return msg(lang, "not_yours" if current is not None and current.active else "nothing_to_stop")
    if ctx.line.leave(job):
        return msg(lang, "left_line")
    preparing = job.state == "starting"
    job.request_stop()
    return msg(lang, "stop_preparing" if preparing else "stop_requested")


def training_status(ctx: AppContext, request: gr.Request, profile: gr.OAuthProfile | None = None) -> dict:
    """Your training (queued, running or the last one): state, position in line, step, losses, samples, the
    finished model's key, the data work's last report (stage, MB done of MB, MB/s); and `line`: whether any
    training runs, its progress and the number waiting. A script keeps its place in line by asking at least every
    few minutes."""
    ctx.line.tick()
    job = ctx.line.job_of(visitor_id(request, profile))
    current = ctx.line.current
    line = {"training": False, "waiting": ctx.line.waiting()}
    if current is not None and current.active and current.state != "queued":
        c = current.snapshot()
        line.update(training=True, step=c.step, max_steps=c.max_steps, remaining_seconds=c.remaining_seconds())
    if job is None:
        return {"state": "idle", "line": line}
    job.seen()
    s = job.snapshot()
    last = {p["curve"]: p for p in s.points}
    return {"state": s.state, "position": s.position, "wait_seconds": s.wait_seconds, "run": s.run_name,
            "step": s.step, "max_steps": s.max_steps, "epoch": s.epoch, "tokens_seen": s.tokens_seen,
            "tokens_per_second": s.tokens_per_second, "train_loss": last.get("train", {}).get("loss"),
            "eval_loss": last.get("validation", {}).get("loss"), "samples": s.samples[-4:], "model": s.entry_key,
            "error": error_text(s.error, request_lang(request)) or None, "settings": s.settings,
            "stop_requested_at": s.stop_requested_at, "peak_rss_mb": round(s.peak_rss / 2**20),
            "data_progress": s.data_progress, "line": line}


def finished_run(ctx: AppContext, run: str | None, lang: str, viewer: str | None):
    """The registry entry of one of the visitor's finished runs (default: their latest), or a visible error."""
    try:
        entry = ctx.registry.resolve(run or LATEST, viewer)
    except ModelError as error:
        raise app_error(lang, str(error)) from None
    if entry is None or entry.kind != "run":
        raise app_error(lang, msg(lang, "no_runs"))
    return entry


def download(ctx: AppContext, run: str | None = None, as_gpt2: bool = False, browser_id: str | None = None,
             request: gr.Request = None, profile: gr.OAuthProfile | None = None):
    """One of your finished runs as a .zip (the model folder without checkpoints); as_gpt2: its GPT-2 form, a
    plain GPT2LMHeadModel folder that loads without trust_remote_code (minigpt.export_gpt2)."""
    lang = request_lang(request)
    folder = Path(finished_run(ctx, run, lang, ctx.viewer(request, profile, browser_id)).path)
    if not as_gpt2:
        return str(make_zip(folder))
    with tempfile.TemporaryDirectory(dir=ctx.tmp_dir) as tmp:
        try:
            exported = export_gpt2(folder, Path(tmp) / f"{folder.name}-gpt2")
        except ExportError as error:
            raise app_error(lang, msg(lang, "no_gpt2_form", error=error)) from None
        return str(make_zip(exported))


def push(ctx: AppContext, run: str | None = None, repo_id: str = "", overwrite: bool = False, as_gpt2: bool = False,
         browser_id: str | None = None, request: gr.Request = None, profile: gr.OAuthProfile | None = None,
         oauth_token: gr.OAuthToken | None = None):
    """Upload one of your finished runs to a Hub model repository in your own namespace: on a Space with your
    Sign in with Hugging Face login, on your own machine with its token."""
    lang = request_lang(request)
    entry = finished_run(ctx, run, lang, ctx.viewer(request, profile, browser_id))
    url = push_run(ctx, lang, entry.path, repo_id, bool(overwrite), profile, oauth_token, as_gpt2=bool(as_gpt2))
    return msg(lang, "pushed", url=url)


# -- layout -----------------------------------------------------------------------------------------------------

def _settings_column() -> dict:
    """The corpus and hyperparameter inputs, by TrainForm's names, in its order (train() takes them so)."""
    d = TrainForm()
    corpus_source = gr.Radio([(T("src_machado"), "machado"), (T("src_python"), "python-reference"),
                              (T("src_upload"), "upload"), (T("src_hub"), "hub")],
                             value=d.corpus_source, label=T("corpus_source"), elem_id="corpus-source")
    files = gr.File([], file_count="multiple", file_types=[".txt"], label=T("files"), visible=False)
    hub_dataset = gr.Textbox(d.hub_dataset, label=T("hub_dataset"), info=T("hub_dataset_info"), visible=False)
    with gr.Row():
        preset = gr.Radio([(T(f"preset_{p}"), p) for p in APP_PRESETS], value=d.preset, label=T("preset"))
        tokenizer_type = gr.Radio([(T("tok_bpe"), "bpe"), (T("tok_char"), "char")], value=d.tokenizer_type,
                                  label=T("tokenizer_type"))
    with gr.Row():
        overfit = gr.Checkbox(d.overfit, label=T("overfit"), info=T("overfit_info"), elem_id="overfit")
        early_stopping = gr.Checkbox(d.early_stopping, label=T("early_stopping"), info=T("early_stopping_info"),
                                     elem_id="early-stopping")
    with gr.Accordion(T("hyper"), open=True):
        length_unit = gr.Radio([(T("unit_minutes"), "minutes"), (T("unit_steps"), "steps"),
                                (T("unit_epochs"), "epochs")], value=d.length_unit, label=T("length_unit"))
        with gr.Row():
            max_steps = gr.Number(d.max_steps, precision=0, label=T("max_steps"), visible=d.length_unit == "steps")
            epochs = gr.Number(d.epochs, label=T("epochs"), visible=d.length_unit == "epochs")
            minutes = gr.Number(d.minutes, label=T("minutes"), step=0.5, visible=d.length_unit == "minutes")
            batch_size = gr.Number(d.batch_size, precision=0, label=T("batch_size"))
        with gr.Row():
            learning_rate = gr.Number(d.learning_rate, label=T("learning_rate"), step=0.0001)
            block_size = gr.Number(d.block_size, precision=0, label=T("block_size"))
        with gr.Row():
            vocab_size = gr.Number(d.vocab_size, precision=0, label=T("vocab_size"))
            seed = gr.Number(d.seed, precision=0, label=T("seed"))
    corpus_source.change(lambda s: (gr.File(visible=s == "upload"), gr.Textbox(visible=s == "hub")),
                         corpus_source, [files, hub_dataset], api_visibility="private", queue=False)
    length_unit.change(lambda u: tuple(gr.Number(visible=u == unit) for unit in ("steps", "epochs", "minutes")),
                       length_unit, [max_steps, epochs, minutes], api_visibility="private", queue=False)
    form = dict(corpus_source=corpus_source, files=files, hub_dataset=hub_dataset, preset=preset,
                tokenizer_type=tokenizer_type, vocab_size=vocab_size, length_unit=length_unit, max_steps=max_steps,
                epochs=epochs, minutes=minutes, batch_size=batch_size, learning_rate=learning_rate,
                block_size=block_size, seed=seed, overfit=overfit, early_stopping=early_stopping)
    preset_fields = [form[name] for name in OVERFIT_FORM]
    overfit.change(overfit_values, overfit, preset_fields, api_visibility="private", queue=False)
    return form


def overfit_values(on: bool) -> list:
    """"See overfitting" fills the form with its settings (minigpt.overfitting); unticked, the form's defaults."""
    values = OVERFIT_FORM if on else {name: getattr(TrainForm(), name) for name in OVERFIT_FORM}
    return list(values.values())


def build_train_tab(ctx: AppContext, seen_job: gr.State, visitor: gr.State) -> SimpleNamespace:
    """The tab's components and its own events; returns what the app wires across tabs (the job outputs, the
    runs dropdown). `visitor`: the page's visitor id (app.py). No event here waits for a training: /train answers
    at once and every page's timer follows the job (space/refresh.py)."""
    gr.Markdown(T("train_help"))
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            form = _settings_column()
            with gr.Row():
                start_btn = gr.Button(T("start"), variant="primary", elem_id="start-training")
                stop_btn = gr.Button(T("stop"), variant="stop", elem_id="stop-training")
            stop_note = gr.Markdown()
            build_one_step_panel(ctx, form)
        with gr.Column(scale=3, min_width=360):
            status = gr.HTML(f'<div class="mg-status"><p>{md_inline(UI_EN["no_job"])}</p></div>',
                             label=T("train_status"), elem_id="train-status")
            with gr.Row():
                loss_plot = gr.LinePlot(x="step", y="value", color="curve", label=T("loss_plot"), elem_id="loss-plot")
                ppl_plot = gr.LinePlot(x="step", y="value", color="curve", label=T("ppl_plot"), elem_id="ppl-plot")
            samples = gr.HTML("", label=T("samples"), elem_id="samples")
            with gr.Accordion(T("trained_models"), open=False):
                runs = run_choices(ctx, "en", ctx.viewer(None))
                with gr.Row():
                    run_select = gr.Dropdown(runs, value=runs[0][1] if runs else None, label=T("run_select"),
                                             allow_custom_value=True, elem_id="run-select")
                    download_btn = gr.Button(T("download"))
                as_gpt2 = gr.Checkbox(False, label=T("as_gpt2"), info=T("as_gpt2_info"), elem_id="as-gpt2")
                zip_file = gr.File(label=T("zip_file"), interactive=False)
                can_push = ctx.on_space or bool(ctx.hf_token)
                gr.Markdown(T("push_help"), visible=can_push)
                with gr.Row(visible=can_push):
                    repo_id = gr.Textbox(label=T("repo_id"), max_length=200)
                    overwrite = gr.Checkbox(False, label=T("overwrite"))
                    push_btn = gr.Button(T("push"))
                push_note = gr.Markdown()

    job_outputs = [status, loss_plot, ppl_plot, samples]
    inputs = [form[f.name] for f in fields(TrainForm)]  # in train()'s order of parameters
    start_btn.click(bind(train, ctx), [*inputs, visitor], [*job_outputs, seen_job], api_name="train",
                    concurrency_id="train", concurrency_limit=2, show_progress="minimal", show_progress_on=[status])
    stop_btn.click(bind(stop, ctx), visitor, stop_note, api_name="stop", concurrency_id="status",
                   concurrency_limit=None, show_progress="hidden")
    download_btn.click(bind(download, ctx), [run_select, as_gpt2, visitor], zip_file, api_name="download",
                       concurrency_id="download", concurrency_limit=2)
    push_btn.click(bind(push, ctx), [run_select, repo_id, overwrite, as_gpt2, visitor], push_note, api_name="push_to_hub",
                   concurrency_id="push", concurrency_limit=1)
    gr.api(bind(training_status, ctx), api_name="training_status", concurrency_id="status", concurrency_limit=None)
    return SimpleNamespace(job_outputs=job_outputs, run_select=run_select, corpus_source=form["corpus_source"])
