"""MiniGPT's Gradio Space: train a small GPT, generate with it, compare before vs after, see the probabilities.

    python app.py                         # http://127.0.0.1:7860 (on a Space: 0.0.0.0, port from the Space)
    python app.py --model runs/minigpt    # also offer saved model folders in the model lists

Thin on purpose: training is training.run_training (the same pipeline as train.py), decoding is transformers'
generate() with the settings of teaching.DecodingSettings, the Probabilities tab is teaching.py, models come from
model_registry.py. The UI speaks Portuguese (pt-BR) and English: static texts through gr.I18n (the browser's
language picks), messages made while running in the language of the request's Accept-Language header.

This file is the UI and its handlers; the rest of the app: app_texts.py (languages and number formats),
app_context.py (the app's state), app_jobs.py (the one training at a time), app_job_views.py (the training
panel's views) and app_generation.py (streamed generation).

Environment: MINIGPT_APP_RUNS (runs folder, default runs/app), MINIGPT_APP_MODELS (more model folders, separated
by os.pathsep), MINIGPT_APP_MAX_UPLOAD_MB (per upload, default 5), HF_TOKEN (shows "Push to the Hub").
"""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a classroom machine
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the app runs tokenizers from several threads

import argparse  # noqa: E402
import logging  # noqa: E402
import queue  # noqa: E402
import shutil  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402

from app_context import AppContext, get_model  # noqa: E402
from app_generation import checked_settings, prepare_prompt, stream_generate  # noqa: E402
from app_job_views import md_inline, plot_frames, samples_html, status_html  # noqa: E402
from app_jobs import APP_PRESETS, HUB_NAME, JobSnapshot, make_worker, make_zip, prepare_job  # noqa: E402
from app_texts import (  # noqa: E402
    I18N,
    MESSAGES,
    UI_EN,
    T,
    app_error,
    fmt,
    fmt_int,
    fmt_num,
    format_duration,
    friendly,
    msg,
    request_lang,
    warn,
)
from hub import HubError  # noqa: E402
from model_registry import APP_RUN_FILE  # noqa: E402, F401 -- kept importable from app: the tests read it here
from model_registry import LATEST, UNTRAINED, ModelError  # noqa: E402
from teaching import DecodingSettings, TeachingError, next_token_distribution, token_surprises  # noqa: E402

DEFAULT_PROMPT = "The value of"
DEFAULT_TEXT = "The if statement is used for conditional execution."
GENERATE_CONCURRENCY = 8  # generations (and probability views) running at once, training or not

TRAIN_DEFAULTS = dict(corpus_source="builtin", preset="tiny", tokenizer_type="bpe", vocab_size=2048,
                      length_unit="steps", max_steps=400, epochs=1.0, batch_size=16, learning_rate=3e-3,
                      block_size=128, seed=42)
GEN_DEFAULTS = dict(strategy="top_p", temperature=0.8, top_k=50, top_p=0.95, repetition_penalty=1.1,
                    max_new_tokens=60, seed=0, num_beams=4)


# ================================================================================================================
# The UI

CSS = """
.mg-status { padding: 4px 2px; }
.mg-status p { margin: 4px 0; }
.mg-bar { height: 14px; background: var(--neutral-200, #e5e7eb); border-radius: 7px; overflow: hidden; margin: 6px 0; }
.mg-bar > div { height: 100%; background: linear-gradient(90deg, #f97316, #ea580c); transition: width .4s; }
.mg-finished .mg-bar > div, .mg-stopped .mg-bar > div { background: #16a34a; }
.mg-failed .mg-bar > div { background: #dc2626; }
.mg-note { color: #b45309; }
.mg-settings { color: var(--body-text-color-subdued, #6b7280); font-size: 0.9em; }
.mg-samples { max-height: 460px; overflow-y: auto; }
.mg-sample { border-bottom: 1px solid var(--border-color-primary, #e5e7eb); padding: 6px 0; }
.mg-sample-head { font-weight: 600; font-size: 0.92em; }
.mg-sample-kind { color: var(--body-text-color-subdued, #6b7280); font-size: 0.85em; margin-top: 2px; }
.mg-sample pre { white-space: pre-wrap; word-break: break-word; margin: 2px 0; padding: 4px 8px;
  background: var(--block-background-fill, #f9fafb); border-radius: 4px; font-size: 0.88em; max-height: 9em;
  overflow-y: auto; }
"""


def build_demo(ctx: AppContext | None = None, **context_kwargs) -> gr.Blocks:
    ctx = ctx or AppContext(**context_kwargs)
    work = make_worker(ctx)

    # -- shared helpers -----------------------------------------------------------------------------------------

    def model_updates(lang: str, select_run: str | None = None):
        """New choices for every model dropdown (values kept; the trainer's own session selects its run)."""
        plain = ctx.registry.choices(lang)
        with_latest = ctx.registry.choices(lang, with_latest=True)
        runs = [(e.label(lang), e.key) for e in ctx.registry.runs()]
        pick = {"value": select_run} if select_run else {}
        return (gr.Dropdown(choices=plain, **pick), gr.Dropdown(choices=with_latest),
                gr.Dropdown(choices=with_latest), gr.Dropdown(choices=plain, **pick),
                gr.Dropdown(choices=runs, **pick))

    def seen(snap: JobSnapshot | None) -> str:
        """What a session has drawn: its timer skips a job version that the train stream already showed."""
        return f"{snap.id}:{snap.version}" if snap is not None else ""

    def job_view(snap: JobSnapshot | None, lang: str, note: str | None = None):
        frames = plot_frames(snap, lang)
        m = MESSAGES[lang]
        curve_colors = {m["train"]: "#2563eb", m["validation"]: "#ea580c"}
        if frames is None:
            plots = (gr.skip(), gr.skip())
        else:
            plots = (
                gr.LinePlot(value=frames[0], x_title=m["col_step"], y_title=m["loss"], color_title=m["legend_split"],
                            color_map=curve_colors),
                gr.LinePlot(value=frames[1], x_title=m["col_step"], y_title=m["perplexity"],
                            color_title=m["legend_split"], color_map=curve_colors),
            )
        return (status_html(snap, lang, note), *plots, samples_html(snap, lang))

    # -- handlers -----------------------------------------------------------------------------------------------

    def train(corpus_source, files, hub_dataset, preset, tokenizer_type, vocab_size, length_unit, max_steps,
              epochs, batch_size, learning_rate, block_size, seed, request: gr.Request, progress=gr.Progress()):
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
        runs = [(e.label(lang), e.key) for e in ctx.registry.runs()]
        yield (*job_view(snap, lang), gr.Dropdown(choices=runs, value=entry.key), str(zip_path), seen(snap))

    def stop(request: gr.Request):
        """Stop the running training at the next step; the model is saved and usable."""
        lang = request_lang(request)
        job = ctx.board.current
        if job is None or not job.active:
            return msg(lang, "nothing_to_stop")
        job.request_stop()
        return msg(lang, "stop_requested")

    def training_status() -> dict:
        """The current (or last) training: state, step, max_steps, losses, samples, the finished model's key."""
        job = ctx.board.current
        if job is None:
            return {"state": "idle"}
        s = job.snapshot()
        last = {}
        for p in s.points:
            last[p["curve"]] = p
        return {"state": s.state, "run": s.run_name, "step": s.step, "max_steps": s.max_steps, "epoch": s.epoch,
                "tokens_seen": s.tokens_seen, "tokens_per_second": s.tokens_per_second,
                "train_loss": last.get("train", {}).get("loss"), "eval_loss": last.get("validation", {}).get("loss"),
                "samples": s.samples[-4:], "model": s.entry_key, "error": s.error, "settings": s.settings,
                "stop_requested_at": s.stop_requested_at}

    def poll(seen_job, seen_models, request: gr.Request):
        """Every visitor's timer: redraw the training panel when the job changed, refresh the model lists when
        a run was added. Unchanged parts are skipped (nothing is sent)."""
        lang = request_lang(request)
        job = ctx.board.current
        outputs = []
        if job is not None:
            snap = job.snapshot()
            key = seen(snap)
            if key != seen_job:
                outputs.extend(job_view(snap, lang))
                seen_job = key
            else:
                outputs.extend([gr.skip()] * 4)
        else:
            outputs.extend([gr.skip()] * 4)
        if ctx.registry.version != seen_models:
            seen_models = ctx.registry.version
            outputs.extend(model_updates(lang))
        else:
            outputs.extend([gr.skip()] * 5)
        return (*outputs, seen_job, seen_models)

    def on_load(request: gr.Request):
        lang = request_lang(request)
        job = ctx.board.current
        snap = job.snapshot() if job is not None else None
        return (*job_view(snap, lang), *model_updates(lang), seen(snap), ctx.registry.version)

    def after_train(request: gr.Request):
        job = ctx.board.current
        snap = job.snapshot() if job is not None else None
        select = snap.entry_key if snap is not None and snap.entry_key else None
        return (*model_updates(request_lang(request), select_run=select), ctx.registry.version)

    def generate(prompt, model=UNTRAINED, strategy=GEN_DEFAULTS["strategy"], temperature=GEN_DEFAULTS["temperature"],
                 top_k=GEN_DEFAULTS["top_k"], top_p=GEN_DEFAULTS["top_p"],
                 repetition_penalty=GEN_DEFAULTS["repetition_penalty"], max_new_tokens=GEN_DEFAULTS["max_new_tokens"],
                 seed=GEN_DEFAULTS["seed"], num_beams=GEN_DEFAULTS["num_beams"], request: gr.Request = None):
        """Continue `prompt` with a model; streams the text (prompt + continuation) token by token."""
        lang = request_lang(request)
        settings = checked_settings(lang, strategy, temperature, top_k, top_p, repetition_penalty, max_new_tokens,
                                    seed, num_beams)
        _, lm, tokenizer = get_model(ctx, model, lang)
        ids = prepare_prompt(lang, tokenizer, lm, prompt, settings)
        yield prompt
        for text in stream_generate(lm, tokenizer, ids, settings):
            yield prompt + text

    def compare(prompt, model_a=UNTRAINED, model_b=LATEST, strategy=GEN_DEFAULTS["strategy"],
                temperature=GEN_DEFAULTS["temperature"], top_k=GEN_DEFAULTS["top_k"], top_p=GEN_DEFAULTS["top_p"],
                repetition_penalty=GEN_DEFAULTS["repetition_penalty"], max_new_tokens=GEN_DEFAULTS["max_new_tokens"],
                seed=GEN_DEFAULTS["seed"], num_beams=GEN_DEFAULTS["num_beams"], request: gr.Request = None):
        """The same prompt and settings through two models, side by side (default: untrained vs latest trained)."""
        lang = request_lang(request)
        base = checked_settings(lang, strategy, temperature, top_k, top_p, repetition_penalty, max_new_tokens,
                                seed, num_beams)
        sides = []
        texts = ["", ""]
        for index, key in enumerate((model_a, model_b)):
            try:
                entry = ctx.registry.resolve(key)
            except ModelError as error:
                raise app_error(lang, str(error)) from None
            if entry is None:
                warn(lang, msg(lang, "no_trained"))
                texts[index] = msg(lang, "no_trained")
                continue
            _, lm, tokenizer = get_model(ctx, entry.key, lang)
            settings = DecodingSettings(**{k: getattr(base, k) for k in base.__dataclass_fields__})
            ids = prepare_prompt(lang, tokenizer, lm, prompt, settings)
            sides.append((index, lm, tokenizer, ids, settings))
            texts[index] = prompt
        yield tuple(texts)
        updates: queue.Queue = queue.Queue()
        cancel = threading.Event()

        def run(index, lm, tokenizer, ids, settings):
            try:
                for text in stream_generate(lm, tokenizer, ids, settings, cancel):
                    updates.put((index, prompt + text))
            except Exception as error:
                updates.put((index, error))
            finally:
                updates.put((index, None))

        threads = [threading.Thread(target=run, args=side, daemon=True) for side in sides]
        for thread in threads:
            thread.start()
        running = len(threads)
        try:
            while running:
                index, item = updates.get(timeout=600)
                if item is None:
                    running -= 1
                    continue
                if isinstance(item, Exception):
                    raise app_error(lang, friendly(item, lang))
                texts[index] = item
                yield tuple(texts)
        finally:
            cancel.set()

    def probabilities(prompt, model=UNTRAINED, temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0,
                      n_bars=15, request: gr.Request = None):
        """The next-token distribution before and after repetition penalty -> temperature -> top-k -> top-p."""
        lang = request_lang(request)
        m = MESSAGES[lang]
        _, lm, tokenizer = get_model(ctx, model, lang)
        try:
            view = next_token_distribution(lm, tokenizer, prompt, temperature=float(temperature), top_k=int(top_k),
                                           top_p=float(top_p), repetition_penalty=float(repetition_penalty),
                                           top_n=int(n_bars))
        except (TeachingError, TypeError, ValueError) as error:
            raise app_error(lang, friendly(error, lang)) from None
        labels = [(f"{'✂ ' if not r.kept else ''}{r.rank}. {r.token}") for r in view.rows]
        status = [m["kept"] if r.kept else m["cut"] for r in view.rows]
        before = pd.DataFrame({"token": labels, "p": [r.p_before for r in view.rows], "status": status})
        after = pd.DataFrame({"token": labels, "p": [r.p_after for r in view.rows], "status": status})
        colors = {m["kept"]: "#2563eb", m["cut"]: "#dc2626"}
        top_before = max([r.p_before for r in view.rows] + [1e-9])
        top_after = max([r.p_after for r in view.rows] + [1e-9])
        best = max(view.rows, key=lambda r: r.p_after)
        summary = msg(lang, "probs_summary", kept=fmt_int(view.kept_count, lang), vocab=fmt_int(view.vocab_size, lang),
                      mass=fmt(view.kept_mass, lang, ".1%"), hb=fmt_num(view.entropy_before_bits, lang, 2),
                      ha=fmt_num(view.entropy_after_bits, lang, 2), top=best.token)
        table = pd.DataFrame({
            m["col_rank"]: [r.rank for r in view.rows], m["col_token"]: [r.token for r in view.rows],
            m["col_logit"]: [round(r.logit, 3) for r in view.rows],
            m["col_p_before"]: [round(r.p_before, 5) for r in view.rows],
            m["col_p_after"]: [round(r.p_after, 5) for r in view.rows],
            m["col_kept"]: ["✓" if r.kept else "✂" for r in view.rows],
        })
        return (
            gr.BarPlot(value=before, x="token", y="p", color="status", color_map=colors, sort=labels,
                       y_lim=[0, min(1.0, top_before * 1.15)], y_title=m["probability"], x_title=m["col_token"],
                       color_title=m["legend_cut"]),
            gr.BarPlot(value=after, x="token", y="p", color="status", color_map=colors, sort=labels,
                       y_lim=[0, min(1.0, top_after * 1.15)], y_title=m["probability"], x_title=m["col_token"],
                       color_title=m["legend_cut"]),
            summary,
            table,
        )

    def surprise(text, model=UNTRAINED, request: gr.Request = None):
        """Each token's surprise -log p (cross entropy) as highlighting, and the text's perplexity."""
        lang = request_lang(request)
        m = MESSAGES[lang]
        _, lm, tokenizer = get_model(ctx, model, lang)
        try:
            view = token_surprises(lm, tokenizer, text)
        except TeachingError as error:
            raise app_error(lang, friendly(error, lang)) from None
        summary = msg(lang, "surprise_summary", nats=fmt_num(view.cross_entropy_nats, lang, 3),
                      bits=fmt_num(view.cross_entropy_bits, lang, 2), ppl=fmt_num(view.perplexity, lang, 1),
                      ppl0=fmt_num(view.perplexity, lang, 0), vocab=fmt_int(lm.config.vocab_size, lang),
                      ubits=fmt_num(view.uniform_bits, lang, 1), n=len(view.tokens))
        if view.truncated:
            summary += msg(lang, "truncated", n=len(view.tokens))
        table = pd.DataFrame({
            m["col_position"]: [t.position + 1 for t in view.tokens], m["col_token"]: [t.token for t in view.tokens],
            m["col_prob"]: [round(t.probability, 5) for t in view.tokens],
            m["col_nats"]: [round(t.nats, 3) for t in view.tokens],
            m["col_bits"]: [round(t.bits, 3) for t in view.tokens],
        })
        return view.highlights(), summary, table

    def finished_run(run: str | None, lang: str):
        """The registry entry of a finished training run (default: the latest), or a visible error."""
        try:
            entry = ctx.registry.resolve(run or LATEST)
        except ModelError as error:
            raise app_error(lang, str(error)) from None
        if entry is None or entry.kind != "run":
            raise app_error(lang, msg(lang, "no_runs"))
        return entry

    def download(run: str | None = None, request: gr.Request = None):
        """A finished run as a .zip (the model folder without checkpoints)."""
        lang = request_lang(request)
        return str(make_zip(ctx, Path(finished_run(run, lang).path)))

    def push(run: str | None = None, repo_id: str = "", request: gr.Request = None):
        """Upload a finished run to a Hub model repository (needs the HF_TOKEN secret)."""
        lang = request_lang(request)
        if not ctx.hf_token:
            raise app_error(lang, msg(lang, "no_token"))
        repo_id = (repo_id or "").strip()
        if not HUB_NAME.match(repo_id):
            raise app_error(lang, msg(lang, "need_repo"))
        entry = finished_run(run, lang)
        from hub import check_hub_access, push_folder

        try:
            check_hub_access(repo_id, ctx.hf_token)
            url = push_folder(entry.path, repo_id, ctx.hf_token)
        except HubError as error:
            raise app_error(lang, str(error)) from None
        return msg(lang, "pushed", url=url)

    def list_models() -> list[dict]:
        """Every model offered: key (pass it as `model`), kind, name, label and summary."""
        return [{"key": e.key, "kind": e.kind, "name": e.name, "label": e.label("en"), **e.summary}
                for e in ctx.registry.entries()]

    # -- layout -------------------------------------------------------------------------------------------------

    plain_choices = ctx.registry.choices("en")
    latest_choices = ctx.registry.choices("en", with_latest=True)
    run_choices = [(e.label("en"), e.key) for e in ctx.registry.runs()]
    strategies = [(T("st_greedy"), "greedy"), (T("st_sample"), "sample"), (T("st_top_k"), "top_k"),
                  (T("st_top_p"), "top_p"), (T("st_beam"), "beam")]

    def decoding_controls(prefix: str):
        with gr.Row():
            strategy = gr.Radio(strategies, value=GEN_DEFAULTS["strategy"], label=T("strategy"),
                                elem_id=f"{prefix}-strategy")
        with gr.Row():
            # 0 is allowed on purpose: temperature 0 or top-k 0 with sampling gets a message that explains why
            temperature = gr.Slider(0.0, 2.0, value=GEN_DEFAULTS["temperature"], step=0.05, label=T("temperature"))
            top_k = gr.Slider(0, 200, value=GEN_DEFAULTS["top_k"], step=1, label=T("top_k"))
            top_p = gr.Slider(0.05, 1.0, value=GEN_DEFAULTS["top_p"], step=0.01, label=T("top_p"))
        with gr.Row():
            repetition_penalty = gr.Slider(1.0, 2.0, value=GEN_DEFAULTS["repetition_penalty"], step=0.05,
                                           label=T("repetition_penalty"))
            max_new_tokens = gr.Slider(1, 256, value=GEN_DEFAULTS["max_new_tokens"], step=1,
                                       label=T("max_new_tokens"))
            seed = gr.Number(GEN_DEFAULTS["seed"], precision=0, minimum=0, label=T("seed"))
            num_beams = gr.Slider(2, 8, value=GEN_DEFAULTS["num_beams"], step=1, label=T("num_beams"))
        return [strategy, temperature, top_k, top_p, repetition_penalty, max_new_tokens, seed, num_beams]

    with gr.Blocks(title="MiniGPT") as demo:
        gr.Markdown(T("intro"))
        seen_job = gr.State("")
        seen_models = gr.State(ctx.registry.version)
        with gr.Tabs():
            # ---- Train ----
            with gr.Tab(T("tab_train"), id="train", elem_id="tab-train"):
                gr.Markdown(T("train_help"))
                with gr.Row():
                    with gr.Column(scale=2, min_width=320):
                        corpus_source = gr.Radio([(T("src_builtin"), "builtin"), (T("src_upload"), "upload"),
                                                  (T("src_hub"), "hub")], value="builtin", label=T("corpus_source"))
                        files = gr.File([], file_count="multiple", file_types=[".txt"], label=T("files"), visible=False)
                        hub_dataset = gr.Textbox("", label=T("hub_dataset"), info=T("hub_dataset_info"), visible=False)
                        with gr.Row():
                            preset = gr.Radio(list(APP_PRESETS), value=TRAIN_DEFAULTS["preset"], label=T("preset"))
                            tokenizer_type = gr.Radio([(T("tok_bpe"), "bpe"), (T("tok_char"), "char")],
                                                      value="bpe", label=T("tokenizer_type"))
                        with gr.Accordion(T("hyper"), open=True):
                            length_unit = gr.Radio([(T("unit_steps"), "steps"), (T("unit_epochs"), "epochs")],
                                                   value="steps", label=T("length_unit"))
                            with gr.Row():
                                max_steps = gr.Number(TRAIN_DEFAULTS["max_steps"], precision=0,
                                                      label=T("max_steps"))
                                epochs = gr.Number(TRAIN_DEFAULTS["epochs"], label=T("epochs"),
                                                   visible=False)
                                batch_size = gr.Number(TRAIN_DEFAULTS["batch_size"], precision=0,
                                                       label=T("batch_size"))
                            with gr.Row():
                                learning_rate = gr.Number(TRAIN_DEFAULTS["learning_rate"],
                                                          label=T("learning_rate"), step=0.0001)
                                block_size = gr.Number(TRAIN_DEFAULTS["block_size"], precision=0,
                                                       label=T("block_size"))
                            with gr.Row():
                                vocab_size = gr.Number(TRAIN_DEFAULTS["vocab_size"], precision=0,
                                                       label=T("vocab_size"))
                                train_seed = gr.Number(TRAIN_DEFAULTS["seed"], precision=0,
                                                       label=T("seed"))
                        with gr.Row():
                            start_btn = gr.Button(T("start"), variant="primary", elem_id="start-training")
                            stop_btn = gr.Button(T("stop"), variant="stop", elem_id="stop-training")
                        stop_note = gr.Markdown()
                    with gr.Column(scale=3, min_width=360):
                        status = gr.HTML(f'<div class="mg-status"><p>{md_inline(UI_EN["no_job"])}</p></div>',
                                         label=T("train_status"), elem_id="train-status")
                        with gr.Row():
                            loss_plot = gr.LinePlot(x="step", y="value", color="curve", label=T("loss_plot"),
                                                    elem_id="loss-plot")
                            ppl_plot = gr.LinePlot(x="step", y="value", color="curve", label=T("ppl_plot"),
                                                   elem_id="ppl-plot")
                        samples = gr.HTML("", label=T("samples"), elem_id="samples")
                        with gr.Accordion(T("trained_models"), open=False):
                            with gr.Row():
                                run_select = gr.Dropdown(run_choices, value=run_choices[0][1] if run_choices else None,
                                                         label=T("run_select"), allow_custom_value=True)
                                download_btn = gr.Button(T("download"))
                            zip_file = gr.File(label=T("zip_file"), interactive=False)
                            with gr.Row(visible=bool(ctx.hf_token)):
                                repo_id = gr.Textbox(label=T("repo_id"))
                                push_btn = gr.Button(T("push"))
                            push_note = gr.Markdown()

            # ---- Generate ----
            with gr.Tab(T("tab_generate"), id="generate", elem_id="tab-generate"):
                gr.Markdown(T("gen_help"))
                gen_model = gr.Dropdown(plain_choices, value=UNTRAINED, label=T("model"), allow_custom_value=True,
                                        elem_id="gen-model")
                gen_prompt = gr.Textbox(DEFAULT_PROMPT, label=T("prompt"), lines=2, elem_id="gen-prompt")
                gen_controls = decoding_controls("gen")
                gen_btn = gr.Button(T("generate"), variant="primary", elem_id="generate-btn")
                gen_output = gr.Textbox(label=T("output"), lines=8, interactive=False, elem_id="gen-output")

            # ---- Compare ----
            with gr.Tab(T("tab_compare"), id="compare", elem_id="tab-compare"):
                gr.Markdown(T("cmp_help"))
                with gr.Row():
                    cmp_a = gr.Dropdown(latest_choices, value=UNTRAINED, label=T("model_a"), allow_custom_value=True)
                    cmp_b = gr.Dropdown(latest_choices, value=LATEST, label=T("model_b"), allow_custom_value=True)
                cmp_prompt = gr.Textbox(DEFAULT_PROMPT, label=T("prompt"), lines=2)
                cmp_controls = decoding_controls("cmp")
                cmp_btn = gr.Button(T("compare"), variant="primary", elem_id="compare-btn")
                with gr.Row():
                    out_a = gr.Textbox(label=T("output_a"), lines=8, interactive=False)
                    out_b = gr.Textbox(label=T("output_b"), lines=8, interactive=False)

            # ---- Probabilities ----
            with gr.Tab(T("tab_probs"), id="probs", elem_id="tab-probs"):
                gr.Markdown(T("probs_help"))
                prob_model = gr.Dropdown(plain_choices, value=UNTRAINED, label=T("model"), allow_custom_value=True)
                prob_prompt = gr.Textbox(DEFAULT_PROMPT, label=T("prompt"), lines=1)
                with gr.Row():
                    prob_temperature = gr.Slider(0.0, 3.0, value=1.0, step=0.05, label=T("temperature"))
                    prob_top_k = gr.Slider(0, 100, value=10, step=1, label=T("top_k"))
                    prob_top_p = gr.Slider(0.05, 1.0, value=0.9, step=0.01, label=T("top_p"))
                    prob_penalty = gr.Slider(1.0, 2.0, value=1.0, step=0.05, label=T("repetition_penalty"))
                    n_bars = gr.Slider(5, 40, value=15, step=1, label=T("n_bars"))
                prob_btn = gr.Button(T("show_probs"), variant="primary", elem_id="probs-btn")
                prob_summary = gr.Markdown()
                with gr.Row():
                    chart_before = gr.BarPlot(x="token", y="p", color="status", label=T("chart_before"),
                                              x_label_angle=-45, elem_id="chart-before")
                    chart_after = gr.BarPlot(x="token", y="p", color="status", label=T("chart_after"),
                                             x_label_angle=-45, elem_id="chart-after")
                with gr.Accordion(T("prob_table"), open=False):
                    prob_table = gr.Dataframe(interactive=False)
                gr.Markdown(T("surprise_help"))
                surprise_text = gr.Textbox(DEFAULT_TEXT, label=T("text"), lines=3)
                surprise_btn = gr.Button(T("measure"), variant="primary", elem_id="surprise-btn")
                surprise_summary = gr.Markdown()
                surprise_out = gr.HighlightedText(label=T("surprise"), show_legend=False, show_inline_category=False,
                                                  elem_id="surprise-out")
                with gr.Accordion(T("prob_table"), open=False):
                    surprise_table = gr.Dataframe(interactive=False)

        timer = gr.Timer(1.0)

        # -- events -------------------------------------------------------------------------------------------------
        model_dropdowns = [gen_model, cmp_a, cmp_b, prob_model, run_select]
        job_outputs = [status, loss_plot, ppl_plot, samples]

        corpus_source.change(lambda s: (gr.File(visible=s == "upload"), gr.Textbox(visible=s == "hub")),
                             corpus_source, [files, hub_dataset], api_visibility="private", queue=False)
        length_unit.change(lambda u: (gr.Number(visible=u == "steps"), gr.Number(visible=u == "epochs")),
                           length_unit, [max_steps, epochs], api_visibility="private", queue=False)

        train_event = start_btn.click(
            train,
            [corpus_source, files, hub_dataset, preset, tokenizer_type, vocab_size, length_unit, max_steps, epochs,
             batch_size, learning_rate, block_size, train_seed],
            [*job_outputs, run_select, zip_file, seen_job],
            api_name="train", concurrency_limit=2, concurrency_id="train", show_progress="minimal",
            show_progress_on=[status],
        )
        train_event.then(after_train, None, [*model_dropdowns, seen_models], api_visibility="private",
                         show_progress="hidden")
        stop_btn.click(stop, None, stop_note, api_name="stop", concurrency_limit=None, show_progress="hidden")
        download_btn.click(download, run_select, zip_file, api_name="download", concurrency_limit=2)
        push_btn.click(push, [run_select, repo_id], push_note, api_name="push_to_hub", concurrency_limit=1)
        gr.api(training_status, api_name="training_status", concurrency_limit=None)
        gr.api(list_models, api_name="models", concurrency_limit=None)

        gen_inputs = [gen_prompt, gen_model, *gen_controls]
        gen_btn.click(generate, gen_inputs, gen_output, api_name="generate", concurrency_id="generate",
                      concurrency_limit=GENERATE_CONCURRENCY)
        gen_prompt.submit(generate, gen_inputs, gen_output, api_visibility="private", concurrency_id="generate",
                          concurrency_limit=GENERATE_CONCURRENCY)
        cmp_btn.click(compare, [cmp_prompt, cmp_a, cmp_b, *cmp_controls], [out_a, out_b], api_name="compare",
                      concurrency_id="generate", concurrency_limit=GENERATE_CONCURRENCY)
        prob_btn.click(probabilities, [prob_prompt, prob_model, prob_temperature, prob_top_k, prob_top_p,
                                       prob_penalty, n_bars],
                       [chart_before, chart_after, prob_summary, prob_table], api_name="next_token_probabilities",
                       concurrency_id="generate", concurrency_limit=GENERATE_CONCURRENCY)
        surprise_btn.click(surprise, [surprise_text, prob_model], [surprise_out, surprise_summary, surprise_table],
                           api_name="surprise", concurrency_id="generate", concurrency_limit=GENERATE_CONCURRENCY)

        timer.tick(poll, [seen_job, seen_models], [*job_outputs, *model_dropdowns, seen_job, seen_models],
                   api_visibility="private", show_progress="hidden", concurrency_limit=None)
        demo.load(on_load, None, [*job_outputs, *model_dropdowns, seen_job, seen_models], api_visibility="private",
                  show_progress="hidden")

    demo.queue(max_size=64, default_concurrency_limit=4)  # the listeners above set their own limits
    demo.minigpt = ctx  # tests and launch() reach the context through the demo
    return demo


def launch_kwargs(ctx: AppContext) -> dict:
    """What launch() needs beyond the Blocks: languages, styling, the upload limit."""
    return dict(i18n=I18N, css=CSS, max_file_size=int(ctx.max_upload_bytes * 2), footer_links=["api", "settings"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="MiniGPT's Gradio app (train, generate, compare, probabilities)")
    parser.add_argument("--model", action="append", default=[], metavar="DIR",
                        help="a saved model folder to offer (repeatable); safetensors weights only")
    parser.add_argument("--runs-dir", default=None, help="where trainings are saved (default: runs/app)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME"), help="e.g. 0.0.0.0")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(name)s %(message)s", level=logging.INFO)
    ctx = AppContext(runs_dir=args.runs_dir, model_dirs=args.model)
    demo = build_demo(ctx)
    demo.launch(server_name=args.host, server_port=args.port, **launch_kwargs(ctx))


if __name__ == "__main__":
    main()
