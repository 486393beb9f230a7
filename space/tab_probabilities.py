"""The Probabilities tab: the next-token distribution before and after generate()'s processors, and each token's
surprise (cross entropy) in a text with its perplexity. The numbers come from minigpt.teaching."""

import gradio as gr
import pandas as pd

from minigpt.teaching import TeachingError, next_token_distribution, token_surprises
from space.binding import bind
from space.context import AppContext, get_model
from space.generation import check_length, generation_slot
from space.registry import UNTRAINED, untrained_key
from space.tab_generate import DEFAULT_PROMPT, GENERATE_CONCURRENCY
from space.texts import (
    MESSAGES,
    VISITOR_PROMPT,
    VISITOR_TEXT,
    T,
    app_error,
    fmt,
    fmt_int,
    fmt_num,
    friendly,
    msg,
    request_lang,
)

DEFAULT_TEXT = VISITOR_TEXT["pt"]  # Portuguese first; texts_for_visitor switches on page load


def _bar_plot(frame: pd.DataFrame, labels: list[str], top: float, lang: str) -> gr.BarPlot:
    m = MESSAGES[lang]
    colors = {m["kept"]: "#2563eb", m["cut"]: "#dc2626"}
    return gr.BarPlot(value=frame, x="token", y="p", color="status", color_map=colors, sort=labels,
                      y_lim=[0, min(1.0, top * 1.15)], y_title=m["probability"], x_title=m["col_token"],
                      # whole percents (10%, 20%) need no decimal separator: the browser's plot writes numbers
                      # the English way only; below 5%, Vega's own format
                      y_axis_format=".0%" if top >= 0.05 else None,
                      color_title=m["legend_cut"])


def probabilities(ctx: AppContext, prompt, model=UNTRAINED, temperature=1.0, top_k=0, top_p=1.0,
                  repetition_penalty=1.0, n_bars=15, browser_id: str | None = None, request: gr.Request = None,
                  profile: gr.OAuthProfile | None = None):
    """The next-token distribution before and after repetition penalty -> temperature -> top-k -> top-p."""
    lang = request_lang(request)
    m = MESSAGES[lang]
    prompt = check_length(lang, prompt, ctx.limits.max_prompt_chars)
    with generation_slot(ctx, lang, request, profile, browser_id):
        _, lm, tokenizer = get_model(ctx, model, lang, ctx.viewer(request, profile, browser_id))
        try:
            view = next_token_distribution(lm, tokenizer, prompt, temperature=float(temperature), top_k=int(top_k),
                                           top_p=float(top_p), repetition_penalty=float(repetition_penalty),
                                           top_n=int(n_bars))
        except (TeachingError, TypeError, ValueError) as error:
            raise app_error(lang, friendly(error, lang)) from None
    rows = view.rows
    labels = [(f"{'✂ ' if not r.kept else ''}{r.rank}. {r.token}") for r in rows]
    status = [m["kept"] if r.kept else m["cut"] for r in rows]
    before = pd.DataFrame({"token": labels, "p": [r.p_before for r in rows], "status": status})
    after = pd.DataFrame({"token": labels, "p": [r.p_after for r in rows], "status": status})
    best = max(rows, key=lambda r: r.p_after)
    summary = msg(lang, "probs_summary", kept=fmt_int(view.kept_count, lang), vocab=fmt_int(view.vocab_size, lang),
                  mass=fmt(view.kept_mass, lang, ".1%"), hb=fmt_num(view.entropy_before_bits, lang, 2),
                  ha=fmt_num(view.entropy_after_bits, lang, 2), top=best.token)
    table = pd.DataFrame({
        m["col_rank"]: [r.rank for r in rows], m["col_token"]: [r.token for r in rows],
        m["col_logit"]: [fmt(r.logit, lang, ".3f") for r in rows],
        m["col_p_before"]: [fmt(r.p_before, lang, ".5f") for r in rows],
        m["col_p_after"]: [fmt(r.p_after, lang, ".5f") for r in rows],
        m["col_kept"]: ["✓" if r.kept else "✂" for r in rows],
    })  # numbers as text written the reader's way (0,12345 in Portuguese)
    return (
        _bar_plot(before, labels, max([r.p_before for r in rows] + [1e-9]), lang),
        _bar_plot(after, labels, max([r.p_after for r in rows] + [1e-9]), lang),
        summary,
        table,
    )


def surprise(ctx: AppContext, text, model=UNTRAINED, browser_id: str | None = None, request: gr.Request = None,
             profile: gr.OAuthProfile | None = None):
    """Each token's surprise -log p (cross entropy) as highlighting, and the text's perplexity."""
    lang = request_lang(request)
    m = MESSAGES[lang]
    text = check_length(lang, text, ctx.limits.max_prompt_chars, what="text")
    with generation_slot(ctx, lang, request, profile, browser_id):
        _, lm, tokenizer = get_model(ctx, model, lang, ctx.viewer(request, profile, browser_id))
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
        m["col_prob"]: [fmt(t.probability, lang, ".5f") for t in view.tokens],
        m["col_nats"]: [fmt(t.nats, lang, ".3f") for t in view.tokens],
        m["col_bits"]: [fmt(t.bits, lang, ".3f") for t in view.tokens],
    })
    return view.highlights(), summary, table


def texts_for_visitor(request: gr.Request = None) -> tuple[str, str]:
    """The tab's prompt and surprise text in the visitor's language, set when the page loads."""
    lang = request_lang(request)
    return VISITOR_PROMPT[lang], VISITOR_TEXT[lang]


def build_probabilities_tab(ctx: AppContext, visitor: gr.State) -> tuple[gr.Dropdown, list[gr.Textbox]]:
    """The Probabilities tab; returns its model dropdown and its two texts (the prompt, the text to measure).
    `visitor`: the page's visitor id (app.py)."""
    gr.Markdown(T("probs_help"))
    model = gr.Dropdown(ctx.registry.choices("en", viewer=ctx.viewer(None)), value=untrained_key(None),
                        label=T("model"),
                        allow_custom_value=True)
    prompt = gr.Textbox(DEFAULT_PROMPT, label=T("prompt"), lines=1)
    with gr.Row():
        temperature = gr.Slider(0.0, 3.0, value=1.0, step=0.05, label=T("temperature"))
        top_k = gr.Slider(0, 100, value=10, step=1, label=T("top_k"))
        top_p = gr.Slider(0.05, 1.0, value=0.9, step=0.01, label=T("top_p"))
        penalty = gr.Slider(1.0, 2.0, value=1.0, step=0.05, label=T("repetition_penalty"))
        n_bars = gr.Slider(5, 40, value=15, step=1, label=T("n_bars"))
    prob_btn = gr.Button(T("show_probs"), variant="primary", elem_id="probs-btn")
    prob_summary = gr.Markdown(elem_id="probs-summary")
    with gr.Row():
        chart_before = gr.BarPlot(x="token", y="p", color="status", label=T("chart_before"), x_label_angle=-45,
                                  elem_id="chart-before")
        chart_after = gr.BarPlot(x="token", y="p", color="status", label=T("chart_after"), x_label_angle=-45,
                                 elem_id="chart-after")
    with gr.Accordion(T("prob_table"), open=False):
        prob_table = gr.Dataframe(interactive=False)
    gr.Markdown(T("surprise_help"))
    text = gr.Textbox(DEFAULT_TEXT, label=T("text"), lines=3)
    surprise_btn = gr.Button(T("measure"), variant="primary", elem_id="surprise-btn")
    surprise_summary = gr.Markdown()
    surprise_out = gr.HighlightedText(label=T("surprise"), show_legend=False, show_inline_category=False,
                                      elem_id="surprise-out")
    with gr.Accordion(T("prob_table"), open=False):
        surprise_table = gr.Dataframe(interactive=False)

    prob_btn.click(bind(probabilities, ctx), [prompt, model, temperature, top_k, top_p, penalty, n_bars, visitor],
                   [chart_before, chart_after, prob_summary, prob_table], api_name="next_token_probabilities",
                   concurrency_id="generate", concurrency_limit=GENERATE_CONCURRENCY)
    surprise_btn.click(bind(surprise, ctx), [text, model, visitor], [surprise_out, surprise_summary, surprise_table],
                       api_name="surprise", concurrency_id="generate", concurrency_limit=GENERATE_CONCURRENCY)
    return model, [prompt, text]
