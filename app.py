"""MiniGPT's Gradio Space: train a small GPT, generate with it, compare before vs after, see the probabilities.

    python app.py                         # http://127.0.0.1:7860 (on a Space: 0.0.0.0, port from the Space)
    python app.py --model runs/minigpt    # also offer saved model folders in the model lists
    GRADIO_SERVER_NAME=0.0.0.0 GRADIO_SERVER_PORT=8080 python app.py   # Gradio's own address settings

Thin on purpose: this file composes the tabs of the `space` package and launches. Training is
minigpt.training.run_training (the same pipeline as train.py), decoding is transformers' generate(). The UI speaks
Portuguese (pt-BR) and English: static texts through gr.I18n (the browser's language picks), messages made while
running in the language of the request's Accept-Language header.

Environment: MINIGPT_APP_RUNS (runs folder, default runs/app), MINIGPT_APP_MODELS (more model folders, separated
by os.pathsep), MINIGPT_APP_MAX_UPLOAD_MB (per upload, default 5), MINIGPT_APP_MAX_UPLOADS_MB (all uploads waiting
at once, default 50), MINIGPT_APP_MAX_MEMORY_GB (a training's computed peak, default 8), MINIGPT_APP_MAX_MINUTES
(per training, preparing its data included, default 30), MINIGPT_APP_MAX_RUNS (runs kept, default 20),
MINIGPT_APP_MAX_RUNS_PER_VISITOR (default 3), MINIGPT_APP_MAX_QUEUE (visitors waiting, default 8),
MINIGPT_APP_MAX_QUEUE_PER_CLIENT (trainings queued or running from one address, default 2),
MINIGPT_APP_MAX_PROMPT_CHARS (default 4000), MINIGPT_APP_MAX_HUB_MB (a Hub dataset's files, checked before
downloading, default 50), MINIGPT_APP_SECRET (the key of the visitors' ids in their browsers; default: made once
and kept in the runs folder), MINIGPT_APP_PUBLIC_RUNS=1 (every visitor sees every run: a classroom). On a hosted
Space (SPACE_ID set) pushes use the visitor's Sign in with Hugging Face; elsewhere HF_TOKEN / `hf auth login`
(shows "Push to the Hub"). SIGTERM is a clean shutdown, as Ctrl+C.
"""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a classroom machine
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the app runs tokenizers from several threads

import argparse  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402

import gradio as gr  # noqa: E402
from gradio.utils import get_space  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402

from space.binding import bind  # noqa: E402
from space.context import AppContext  # noqa: E402
from space.job_views import CSS  # noqa: E402
from space.refresh import MODEL_DROPDOWNS, list_models, on_load, poll, untrained_for_corpus  # noqa: E402
from space.request_limit import BodyLimit, QueueShare  # noqa: E402
from space.tab_generate import build_compare_tab, build_generate_tab, prompts_for_visitor  # noqa: E402
from space.tab_glossary import build_glossary_tab  # noqa: E402
from space.tab_probabilities import build_probabilities_tab, texts_for_visitor  # noqa: E402
from space.tab_train import build_train_tab, corpus_for_visitor  # noqa: E402
from space.texts import I18N, LOGIN_LABELS, LOGOUT_LABELS, T, request_lang  # noqa: E402
from space.uploads import UploadLimit  # noqa: E402

QUEUE_SIZE = 64  # events waiting in Gradio's queue, all visitors together; one address may hold a quarter


def build_demo(ctx: AppContext) -> gr.Blocks:
    """The app: five tabs, each built by its module; here only what crosses tabs (who the visitor is, the model
    lists, the training panel that every page's timer keeps current)."""
    # delete_cache: Gradio's files are deleted at shutdown too (the upload janitor removes them within minutes)
    with gr.Blocks(title="MiniGPT", delete_cache=(600, 3600)) as demo:
        with gr.Row():
            gr.Markdown(T("intro"))
            # Sign in with Hugging Face works on a Space only (elsewhere launch would need a local token)
            logins = []
            if ctx.on_space and get_space():
                with gr.Column(scale=0, min_width=240):
                    logins = [gr.LoginButton(LOGIN_LABELS[lang], logout_value=LOGOUT_LABELS[lang], visible=lang == "pt",
                                             elem_id=f"login-{lang}") for lang in ("pt", "en")]
                    gr.Markdown(T("login_help"))
        # The visitor: an unguessable id kept (encrypted) in their browser, read into the page's session when it
        # loads. Handlers take the session's copy, which no API call can set: a script is its own session.
        stored_id = gr.BrowserState(None, storage_key="minigpt-visitor", secret=ctx.secret)
        visitor = gr.State("")
        seen_job = gr.State("")
        seen_models = gr.State(ctx.registry.version)
        with gr.Tabs():
            with gr.Tab(T("tab_train"), id="train", elem_id="tab-train"):
                train_tab = build_train_tab(ctx, seen_job, visitor)
            with gr.Tab(T("tab_generate"), id="generate", elem_id="tab-generate"):
                gen_model, gen_prompt = build_generate_tab(ctx, visitor)
            with gr.Tab(T("tab_compare"), id="compare", elem_id="tab-compare"):
                cmp_models, cmp_prompt = build_compare_tab(ctx, visitor)
            with gr.Tab(T("tab_probs"), id="probs", elem_id="tab-probs"):
                prob_model, prob_texts = build_probabilities_tab(ctx, visitor)
            with gr.Tab(T("tab_glossary"), id="glossary", elem_id="tab-glossary"):
                build_glossary_tab()

        dropdowns = {"generate": gen_model, "compare_a": cmp_models[0], "compare_b": cmp_models[1],
                     "probabilities": prob_model, "runs": train_tab.run_select}
        model_dropdowns = [dropdowns[name] for name in MODEL_DROPDOWNS]
        refreshed = [*train_tab.job_outputs, *model_dropdowns, seen_job, seen_models]
        gr.api(bind(list_models, ctx), api_name="models", concurrency_id="status", concurrency_limit=None)
        gr.Timer(1.0).tick(bind(poll, ctx), [seen_job, seen_models, visitor], refreshed, api_visibility="private",
                           show_progress="hidden", concurrency_id="status", concurrency_limit=None)
        demo.load(bind(on_load, ctx), stored_id, [*refreshed, visitor, stored_id], api_visibility="private",
                  show_progress="hidden", concurrency_id="status", concurrency_limit=None)
        # Portuguese visitors start on Machado and "Era uma vez", English ones on the Python reference
        demo.load(corpus_for_visitor, None, train_tab.corpus_source, api_visibility="private", queue=False)
        demo.load(prompts_for_visitor, None, [gen_prompt, cmp_prompt], api_visibility="private", queue=False)
        demo.load(texts_for_visitor, None, prob_texts, api_visibility="private", queue=False)
        if logins:
            demo.load(logins_for_visitor, None, logins, api_visibility="private", queue=False)
        follows_corpus = [gen_model, *cmp_models, prob_model]  # an untrained model has the chosen corpus's tokenizer
        train_tab.corpus_source.change(untrained_for_corpus, [train_tab.corpus_source, *follows_corpus], follows_corpus,
                                       api_visibility="private", queue=False)

    # Every listener sets its own concurrency id and limit: nothing waits behind a training (no handler runs for
    # one) or behind generations. api_open=False: no call skips the queue and its limits (/run/<api_name>).
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=4, api_open=False)
    return demo


def logins_for_visitor(request: gr.Request = None):
    """The sign-in button in the visitor's language (Portuguese, then English), the other hidden."""
    lang = request_lang(request)
    return gr.update(visible=lang == "pt"), gr.update(visible=lang == "en")


def launch_kwargs(ctx: AppContext) -> dict:
    """What launch() needs beyond the Blocks: languages, styling, the upload, request and queue limits."""
    middleware = [Middleware(BodyLimit),
                  Middleware(UploadLimit, max_upload_bytes=ctx.max_upload_bytes,
                             budget_bytes=int(ctx.limits.max_uploads_mb * 2**20)),
                  Middleware(QueueShare, per_client=QUEUE_SIZE // 4, behind_proxy=ctx.on_space)]
    return dict(i18n=I18N, css=CSS, max_file_size=ctx.max_upload_bytes, footer_links=["api", "settings"],
                app_kwargs={"middleware": middleware})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="MiniGPT's Gradio app (train, generate, compare, probabilities)")
    parser.add_argument("--model", action="append", default=[], metavar="DIR",
                        help="a saved model folder to offer (repeatable); safetensors weights only")
    parser.add_argument("--runs-dir", default=None, help="where trainings are saved (default: runs/app)")
    parser.add_argument("--public-runs", action="store_true", default=None,
                        help="every visitor sees, uses and downloads every run (a classroom); default: their own")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a clean exit, as Ctrl+C: the temp folders go
    logging.basicConfig(format="%(asctime)s %(name)s %(message)s", level=logging.INFO)
    ctx = AppContext(runs_dir=args.runs_dir, model_dirs=args.model, public_runs=args.public_runs)
    try:
        build_demo(ctx).launch(**launch_kwargs(ctx))  # the address: GRADIO_SERVER_NAME, GRADIO_SERVER_PORT
    finally:
        ctx.close()


if __name__ == "__main__":
    main()
