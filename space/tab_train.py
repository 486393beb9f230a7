"""The Train tab: corpus and settings, Start / Stop, the live training panel, download and push of finished runs.

Handlers are module-level functions of the app's context (bound with space.binding.bind in build_train_tab), so
tests can call them without a server.
"""

import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from minigpt.hub import HubError, check_hub_access, push_folder
from space.binding import bind
from space.context import AppContext
from space.job_views import md_inline, plot_frames, samples_html, status_html
from space.jobs import APP_PRESETS, HUB_NAME, JobSnapshot, make_zip, prepare_job
from space.registry import LATEST, ModelError
from space.texts import MESSAGES, UI_EN, VISITOR_CORPUS, T, app_error, format_duration, msg, request_lang, warn

TRAIN_DEFAULTS = dict(corpus_source="machado", preset="tiny", tokenizer_type="bpe", vocab_size=2048,
                      length_unit="steps", max_steps=400, epochs=1.0, batch_size=16, learning_rate=3e-3,
                      block_size=128, seed=42)


def seen(snap: JobSnapshot | None) -> str:
    """What a session has drawn: its timer skips a job version that the train stream already showed."""
    return f"{snap.id}:{snap.version}" if snap is not None else ""


def job_view(snap: JobSnapshot | None, lang: str, note: str | None = None):
    """The training panel's four outputs: status HTML, loss plot, perplexity plot, samples."""
    frames = plot_frames(snap, lang)
    m = MESSAGES[lang]
    curve_colors = {m["train"]: "#2563eb", m["validation"]: "#ea580c"}
    if frames is None:
        plots = (gr.skip(), gr.skip())
    else:
        plots = tuple(
            gr.LinePlot(value=frame, x_title=m["col_step"], y_title=m[name], color_title=m["legend_split"],
                        color_map=curve_colors)
            for frame, name in zip(frames, ("loss", "perplexity"))
        )
    return (status_html(snap, lang, note), *plots, samples_html(snap, lang))


def corpus_for_visitor(request: gr.Request = None) -> str:
    """The built-in corpus in the visitor's language, chosen when the page loads (they can switch)."""
    return VISITOR_CORPUS[request_lang(request)]


def run_choices(ctx: AppContext, lang: str) -> list[tuple[str, str]]:
    return [(e.label(lang), e.key) for e in ctx.registry.runs()]


# -- handlers ---------------------------------------------------------------------------------------------------

def train(ctx: AppContext, work, corpus_source, files, hub_dataset, preset, tokenizer_type, vocab_size, length_unit,
          max_steps, epochs, batch_size, learning_rate, block_size, seed, request: gr.Request,
          progress=gr.Progress()):
    """Start a training (one at a time for the whole app) and stream its progress: status (HTML with a
    progress bar), loss and perplexity plots, the sample texts, then the finished run and its zip."""
    lang = request_lang(request)
    job = None
    if not ctx.board.busy():
        job = prepare_job(ctx, lang, corpus_source, files, hub_dataset, preset, tokenizer_type, vocab_size,
                          length_unit, max_steps, epochs, batch_size, learning_rate, block_size, seed)
    if job is None or not ctx.board.start(job, work):
        if job is not None and job.cleanup is not None:
            shutil.rmtree(job.cleanup, ignore_errors=True)
        snap = ctx.board.current.snapshot()
        note = msg(lang, "busy", ago=format_duration(time.time() - snap.started))
        warn(lang, note)
        yield (*job_view(snap, lang, note), gr.skip(), gr.skip(), seen(snap))
        return
    version = -1
    snap = job.snapshot()
    while True:
        snap = job.wait(version, timeout=1.0)
        if snap.version != version:
            version = snap.version
            total = snap.max_steps if snap.max_steps and snap.max_steps > 0 else None
            progress((snap.step, total), desc=MESSAGES[lang]["running"], unit="steps")
            if snap.done:
                break
            yield (*job_view(snap, lang), gr.skip(), gr.skip(), seen(snap))
            time.sleep(0.4)  # at most ~2 updates a second; the job keeps running meanwhile
    if snap.state == "failed":
        yield (*job_view(snap, lang), gr.skip(), gr.skip(), seen(snap))
        raise app_error(lang, msg(lang, "failed", error=snap.error))
    entry = ctx.registry.resolve(snap.entry_key)
    zip_path = make_zip(ctx, Path(entry.path))
    yield (*job_view(snap, lang), gr.Dropdown(choices=run_choices(ctx, lang), value=entry.key), str(zip_path),
           seen(snap))


def stop(ctx: AppContext, request: gr.Request):
    """Stop the running training at the next step; the model is saved and usable."""
    lang = request_lang(request)
    job = ctx.board.current
    if job is None or not job.active:
        return msg(lang, "nothing_to_stop")
    job.request_stop()
    return msg(lang, "stop_requested")


def training_status(ctx: AppContext) -> dict:
    """The current (or last) training: state, step, max_steps, losses, samples, the finished model's key."""
    job = ctx.board.current
    if job is None:
        return {"state": "idle"}
    s = job.snapshot()
    last = {p["curve"]: p for p in s.points}
    return {"state": s.state, "run": s.run_name, "step": s.step, "max_steps": s.max_steps, "epoch": s.epoch,
            "tokens_seen": s.tokens_seen, "tokens_per_second": s.tokens_per_second,
            "train_loss": last.get("train", {}).get("loss"), "eval_loss": last.get("validation", {}).get("loss"),
            "samples": s.samples[-4:], "model": s.entry_key, "error": s.error, "settings": s.settings,
            "stop_requested_at": s.stop_requested_at}


def finished_run(ctx: AppContext, run: str | None, lang: str):
    """The registry entry of a finished training run (default: the latest), or a visible error."""
    try:
        entry = ctx.registry.resolve(run or LATEST)
    except ModelError as error:
        raise app_error(lang, str(error)) from None
    if entry is None or entry.kind != "run":
        raise app_error(lang, msg(lang, "no_runs"))
    return entry


def download(ctx: AppContext, run: str | None = None, request: gr.Request = None):
    """A finished run as a .zip (the model folder without checkpoints)."""
    lang = request_lang(request)
    return str(make_zip(ctx, Path(finished_run(ctx, run, lang).path)))


def push(ctx: AppContext, run: str | None = None, repo_id: str = "", request: gr.Request = None):
    """Upload a finished run to a Hub model repository (needs the HF_TOKEN secret)."""
    lang = request_lang(request)
    if not ctx.hf_token:
        raise app_error(lang, msg(lang, "no_token"))
    repo_id = (repo_id or "").strip()
    if not HUB_NAME.match(repo_id):
        raise app_error(lang, msg(lang, "need_repo"))
    entry = finished_run(ctx, run, lang)
    try:
        check_hub_access(repo_id, ctx.hf_token)
        url = push_folder(entry.path, repo_id, ctx.hf_token)
    except HubError as error:
        raise app_error(lang, str(error)) from None
    return msg(lang, "pushed", url=url)


# -- layout -----------------------------------------------------------------------------------------------------

def _settings_column():
    """The corpus and hyperparameter inputs, in the order train() takes them."""
    d = TRAIN_DEFAULTS
    corpus_source = gr.Radio([(T("src_machado"), "machado"), (T("src_python"), "python-reference"),
                              (T("src_upload"), "upload"), (T("src_hub"), "hub")],
                             value=d["corpus_source"], label=T("corpus_source"), elem_id="corpus-source")
    files = gr.File([], file_count="multiple", file_types=[".txt"], label=T("files"), visible=False)
    hub_dataset = gr.Textbox("", label=T("hub_dataset"), info=T("hub_dataset_info"), visible=False)
    with gr.Row():
        preset = gr.Radio(list(APP_PRESETS), value=d["preset"], label=T("preset"))
        tokenizer_type = gr.Radio([(T("tok_bpe"), "bpe"), (T("tok_char"), "char")], value=d["tokenizer_type"],
                                  label=T("tokenizer_type"))
    with gr.Accordion(T("hyper"), open=True):
        length_unit = gr.Radio([(T("unit_steps"), "steps"), (T("unit_epochs"), "epochs")], value=d["length_unit"],
                               label=T("length_unit"))
        with gr.Row():
            max_steps = gr.Number(d["max_steps"], precision=0, label=T("max_steps"))
            epochs = gr.Number(d["epochs"], label=T("epochs"), visible=False)
            batch_size = gr.Number(d["batch_size"], precision=0, label=T("batch_size"))
        with gr.Row():
            learning_rate = gr.Number(d["learning_rate"], label=T("learning_rate"), step=0.0001)
            block_size = gr.Number(d["block_size"], precision=0, label=T("block_size"))
        with gr.Row():
            vocab_size = gr.Number(d["vocab_size"], precision=0, label=T("vocab_size"))
            seed = gr.Number(d["seed"], precision=0, label=T("seed"))
    corpus_source.change(lambda s: (gr.File(visible=s == "upload"), gr.Textbox(visible=s == "hub")),
                         corpus_source, [files, hub_dataset], api_visibility="private", queue=False)
    length_unit.change(lambda u: (gr.Number(visible=u == "steps"), gr.Number(visible=u == "epochs")),
                       length_unit, [max_steps, epochs], api_visibility="private", queue=False)
    return [corpus_source, files, hub_dataset, preset, tokenizer_type, vocab_size, length_unit, max_steps, epochs,
            batch_size, learning_rate, block_size, seed]


def build_train_tab(ctx: AppContext, work, seen_job: gr.State) -> SimpleNamespace:
    """The tab's components and its own events; returns what the app wires across tabs (the job outputs, the
    runs dropdown, the train event)."""
    gr.Markdown(T("train_help"))
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            inputs = _settings_column()
            with gr.Row():
                start_btn = gr.Button(T("start"), variant="primary", elem_id="start-training")
                stop_btn = gr.Button(T("stop"), variant="stop", elem_id="stop-training")
            stop_note = gr.Markdown()
        with gr.Column(scale=3, min_width=360):
            status = gr.HTML(f'<div class="mg-status"><p>{md_inline(UI_EN["no_job"])}</p></div>',
                             label=T("train_status"), elem_id="train-status")
            with gr.Row():
                loss_plot = gr.LinePlot(x="step", y="value", color="curve", label=T("loss_plot"), elem_id="loss-plot")
                ppl_plot = gr.LinePlot(x="step", y="value", color="curve", label=T("ppl_plot"), elem_id="ppl-plot")
            samples = gr.HTML("", label=T("samples"), elem_id="samples")
            with gr.Accordion(T("trained_models"), open=False):
                runs = run_choices(ctx, "en")
                with gr.Row():
                    run_select = gr.Dropdown(runs, value=runs[0][1] if runs else None, label=T("run_select"),
                                             allow_custom_value=True)
                    download_btn = gr.Button(T("download"))
                zip_file = gr.File(label=T("zip_file"), interactive=False)
                with gr.Row(visible=bool(ctx.hf_token)):
                    repo_id = gr.Textbox(label=T("repo_id"))
                    push_btn = gr.Button(T("push"))
                push_note = gr.Markdown()

    job_outputs = [status, loss_plot, ppl_plot, samples]
    train_event = start_btn.click(
        bind(train, ctx, work), inputs, [*job_outputs, run_select, zip_file, seen_job],
        api_name="train", concurrency_limit=2, concurrency_id="train", show_progress="minimal",
        show_progress_on=[status],
    )
    stop_btn.click(bind(stop, ctx), None, stop_note, api_name="stop", concurrency_limit=None,
                   show_progress="hidden")
    download_btn.click(bind(download, ctx), run_select, zip_file, api_name="download", concurrency_limit=2)
    push_btn.click(bind(push, ctx), [run_select, repo_id], push_note, api_name="push_to_hub", concurrency_limit=1)
    gr.api(bind(training_status, ctx), api_name="training_status", concurrency_limit=None)
    return SimpleNamespace(job_outputs=job_outputs, run_select=run_select, train_event=train_event,
                           corpus_source=inputs[0])
