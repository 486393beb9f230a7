"""The Generate and Compare tabs: a prompt continued by one model (streamed), or by two models side by side.

Decoding is transformers' generate() with the settings of teaching.DecodingSettings (space/generation.py streams
it). Handlers are module-level functions of the app's context, bound with space.binding.bind.
"""

import queue
import threading
from dataclasses import asdict, replace

import gradio as gr

from minigpt.teaching import STRATEGY_KNOBS, DecodingSettings
from space.binding import bind
from space.context import AppContext, get_model
from space.generation import check_length, checked_settings, generation_slot, prepare_prompt, stream_generate
from space.registry import LATEST, LATEST_INITIAL, UNTRAINED, ModelError, untrained_key
from space.texts import (
    CORPUS_SHORT,
    PRETRAINED_DATA,
    VISITOR_PROMPT,
    T,
    app_error,
    corpus_shown,
    fmt_int,
    format_parameters,
    friendly,
    msg,
    request_lang,
    warn,
)

DEFAULT_PROMPT = VISITOR_PROMPT["pt"]  # Portuguese first; prompt_for_visitor switches on page load
GENERATE_CONCURRENCY = 8  # generations (and probability views) running at once, training or not
D = asdict(DecodingSettings())  # the decoding controls' defaults


def generate(ctx: AppContext, prompt, model=UNTRAINED, strategy=D["strategy"], temperature=D["temperature"],
             top_k=D["top_k"], top_p=D["top_p"], repetition_penalty=D["repetition_penalty"],
             max_new_tokens=D["max_new_tokens"], seed=D["seed"], num_beams=D["num_beams"],
             browser_id: str | None = None, request: gr.Request = None, profile: gr.OAuthProfile | None = None):
    """Continue `prompt` with a model; streams the text (prompt + continuation) token by token."""
    lang = request_lang(request)
    prompt = check_length(lang, prompt, ctx.limits.max_prompt_chars)
    settings = checked_settings(lang, strategy, temperature, top_k, top_p, repetition_penalty, max_new_tokens,
                                seed, num_beams)
    with generation_slot(ctx, lang, request, profile, browser_id):
        _, lm, tokenizer = get_model(ctx, model, lang, ctx.viewer(request, profile, browser_id))
        ids = prepare_prompt(lang, tokenizer, lm, prompt, settings)
        yield prompt
        for text in stream_generate(lm, tokenizer, ids, settings):
            yield prompt + text


def compare(ctx: AppContext, prompt, model_a=LATEST_INITIAL, model_b=LATEST, strategy=D["strategy"],
            temperature=D["temperature"], top_k=D["top_k"], top_p=D["top_p"],
            repetition_penalty=D["repetition_penalty"], max_new_tokens=D["max_new_tokens"], seed=D["seed"],
            num_beams=D["num_beams"], browser_id: str | None = None, request: gr.Request = None,
            profile: gr.OAuthProfile | None = None):
    """The same prompt and settings through two models, side by side (default: your latest run before training,
    step 0, and after it)."""
    lang = request_lang(request)
    prompt = check_length(lang, prompt, ctx.limits.max_prompt_chars)
    viewer = ctx.viewer(request, profile, browser_id)
    base = checked_settings(lang, strategy, temperature, top_k, top_p, repetition_penalty, max_new_tokens, seed,
                            num_beams)
    with generation_slot(ctx, lang, request, profile, browser_id):
        sides = []
        texts = ["", ""]
        for index, key in enumerate((model_a, model_b)):
            try:
                entry = ctx.registry.resolve(key, viewer)
            except ModelError as error:
                raise app_error(lang, str(error)) from None
            if entry is None:
                texts[index] = msg(lang, "no_trained_side")
                continue
            _, lm, tokenizer = get_model(ctx, entry.key, lang, viewer)
            settings = replace(base)  # each side its own copy: prepare_prompt may clip its max_new_tokens
            ids = prepare_prompt(lang, tokenizer, lm, prompt, settings)
            sides.append((index, lm, tokenizer, ids, settings))
            texts[index] = prompt
        if len(sides) < 2:
            warn(lang, msg(lang, "no_trained_side"))
        yield tuple(texts)
        yield from _stream_sides(lang, prompt, sides, texts)


def prompts_for_visitor(request: gr.Request = None) -> tuple[str, str]:
    """Generate's and Compare's prompt in the visitor's language, set when the page loads."""
    prompt = VISITOR_PROMPT[request_lang(request)]
    return prompt, prompt


def model_facts(ctx: AppContext, *keys_then_visitor, request: gr.Request = None,
                profile: gr.OAuthProfile | None = None) -> str:
    """Size and training data of each chosen model (the model keys, then the page's visitor id): the visitor's
    tiny model beside a pre-trained GPT-2. Only the models this viewer may use: another visitor's run says
    nothing, whatever its key."""
    *keys, browser_id = keys_then_visitor
    lang = request_lang(request)
    viewer = ctx.viewer(request, profile, browser_id)
    lines = []
    for key in keys:
        try:
            entry = ctx.registry.resolve(key, viewer)
        except ModelError:
            continue
        if entry is None:
            continue
        s = entry.summary
        size = format_parameters(s.get("parameters"), lang)
        if entry.kind == "untrained":
            lines.append(msg(lang, "facts_untrained", name=entry.name, size=size,
                             corpus=CORPUS_SHORT[lang].get(s.get("corpus"), "")))
        elif entry.kind == "initial":
            lines.append(msg(lang, "facts_initial", name=entry.name, size=size, corpus=s.get("corpus") or "–"))
        elif entry.kind == "pretrained":
            data = PRETRAINED_DATA.get(entry.name, {}).get(lang) or msg(lang, "facts_unknown_data")
            lines.append(msg(lang, "facts_pretrained", name=entry.name, size=size, data=data))
        else:
            tokens = fmt_int(s["train_tokens"], lang) if s.get("train_tokens") else "?"
            lines.append(msg(lang, "facts_run", name=entry.name, size=size, tokens=tokens,
                             corpus=corpus_shown(s.get("corpus") or "–", lang)))
    return "\n\n".join(lines)


# Gradio fills in gr.Request only for named parameters (not after *args): the events call these two.
def facts_of_model(ctx: AppContext, model, browser_id: str | None = None, request: gr.Request = None,
                   profile: gr.OAuthProfile | None = None) -> str:
    return model_facts(ctx, model, browser_id, request=request, profile=profile)


def facts_of_models(ctx: AppContext, model_a, model_b, browser_id: str | None = None, request: gr.Request = None,
                    profile: gr.OAuthProfile | None = None) -> str:
    return model_facts(ctx, model_a, model_b, browser_id, request=request, profile=profile)


def _stream_sides(lang, prompt, sides, texts):
    """Both generations at once, each in its own thread; yields both texts whenever one grows."""
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


# -- layout -----------------------------------------------------------------------------------------------------

def decoding_controls(prefix: str) -> list:
    """Strategy and its settings, in the order generate() and compare() take them."""
    strategies = [(T("st_greedy"), "greedy"), (T("st_sample"), "sample"), (T("st_top_k"), "top_k"),
                  (T("st_top_p"), "top_p"), (T("st_beam"), "beam")]
    with gr.Row():
        strategy = gr.Radio(strategies, value=D["strategy"], label=T("strategy"), elem_id=f"{prefix}-strategy")
    shown = STRATEGY_KNOBS[D["strategy"]]
    with gr.Row():
        # 0 is allowed on purpose: temperature 0 or top-k 0 with sampling gets a message that explains why
        temperature = gr.Slider(0.0, 2.0, value=D["temperature"], step=0.05, label=T("temperature"),
                                visible="temperature" in shown, elem_id=f"{prefix}-temperature")
        top_k = gr.Slider(0, 200, value=D["top_k"], step=1, label=T("top_k"), visible="top_k" in shown,
                          elem_id=f"{prefix}-top-k")
        top_p = gr.Slider(0.05, 1.0, value=D["top_p"], step=0.01, label=T("top_p"), visible="top_p" in shown,
                          elem_id=f"{prefix}-top-p")
    with gr.Row():
        repetition_penalty = gr.Slider(1.0, 2.0, value=D["repetition_penalty"], step=0.05,
                                       label=T("repetition_penalty"))
        max_new_tokens = gr.Slider(1, 256, value=D["max_new_tokens"], step=1, label=T("max_new_tokens"))
        seed = gr.Number(D["seed"], precision=0, minimum=0, label=T("seed"), visible="seed" in shown,
                         elem_id=f"{prefix}-seed")
        num_beams = gr.Slider(2, 8, value=D["num_beams"], step=1, label=T("num_beams"),
                              visible="num_beams" in shown, elem_id=f"{prefix}-num-beams")
    knobs = {"temperature": temperature, "top_k": top_k, "top_p": top_p, "seed": seed, "num_beams": num_beams}
    strategy.change(lambda chosen: [gr.update(visible=name in STRATEGY_KNOBS.get(chosen, ())) for name in knobs],
                    strategy, list(knobs.values()), api_visibility="private", queue=False)
    return [strategy, temperature, top_k, top_p, repetition_penalty, max_new_tokens, seed, num_beams]


def build_generate_tab(ctx: AppContext, visitor: gr.State) -> tuple[gr.Dropdown, gr.Textbox]:
    """The Generate tab; returns its model dropdown (the app refreshes it when runs are added) and its prompt.
    `visitor`: the page's visitor id (app.py)."""
    gr.Markdown(T("gen_help"))
    model = gr.Dropdown(ctx.registry.choices("en", viewer=ctx.viewer(None)), value=untrained_key(None),
                        label=T("model"),
                        allow_custom_value=True, elem_id="gen-model")
    facts = gr.Markdown(elem_id="gen-facts")
    model.change(bind(facts_of_model, ctx), [model, visitor], facts, api_visibility="private", queue=False)
    prompt = gr.Textbox(DEFAULT_PROMPT, label=T("prompt"), lines=2, elem_id="gen-prompt")
    controls = decoding_controls("gen")
    button = gr.Button(T("generate"), variant="primary", elem_id="generate-btn")
    output = gr.Textbox(label=T("output"), lines=8, interactive=False, elem_id="gen-output")
    handler = bind(generate, ctx)
    inputs = [prompt, model, *controls, visitor]
    button.click(handler, inputs, output, api_name="generate", concurrency_id="generate",
                 concurrency_limit=GENERATE_CONCURRENCY)
    prompt.submit(handler, inputs, output, api_visibility="private", concurrency_id="generate",
                  concurrency_limit=GENERATE_CONCURRENCY)
    return model, prompt


def build_compare_tab(ctx: AppContext, visitor: gr.State) -> tuple[list[gr.Dropdown], gr.Textbox]:
    """The Compare tab; returns its two model dropdowns and its prompt."""
    gr.Markdown(T("cmp_help"))
    choices = ctx.registry.choices("en", with_latest=True, viewer=ctx.viewer(None))
    with gr.Row():
        model_a = gr.Dropdown(choices, value=LATEST_INITIAL, label=T("model_a"), allow_custom_value=True,
                              elem_id="cmp-model-a")
        model_b = gr.Dropdown(choices, value=LATEST, label=T("model_b"), allow_custom_value=True,
                              elem_id="cmp-model-b")
    facts = gr.Markdown(elem_id="cmp-facts")
    gr.on([model_a.change, model_b.change], bind(facts_of_models, ctx), [model_a, model_b, visitor], facts,
          api_visibility="private", queue=False)
    prompt = gr.Textbox(DEFAULT_PROMPT, label=T("prompt"), lines=2, elem_id="cmp-prompt")
    controls = decoding_controls("cmp")
    button = gr.Button(T("compare"), variant="primary", elem_id="compare-btn")
    with gr.Row():
        out_a = gr.Textbox(label=T("output_a"), lines=8, interactive=False)
        out_b = gr.Textbox(label=T("output_b"), lines=8, interactive=False)
    button.click(bind(compare, ctx), [prompt, model_a, model_b, *controls, visitor], [out_a, out_b], api_name="compare",
                 concurrency_id="generate", concurrency_limit=GENERATE_CONCURRENCY)
    return [model_a, model_b], prompt
