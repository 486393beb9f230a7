"""The Train tab's "one training step, by hand" panel: the visitor's corpus and settings, one batch, the step the
Trainer repeats written out (minigpt.one_step): forward pass, cross entropy, loss.backward(), optimizer.step(),
the loss on the same batch again.

One step of a model the form allows, on at most MAX_BATCH sequences of a built-in corpus: seconds on a CPU, one at
a time for the whole app (its own concurrency id), in the web process (nothing is written but the corpus caches).
"""

import tempfile
from dataclasses import replace
from html import escape

import gradio as gr

from minigpt.arguments import DataArguments, MiniGPTTrainingArguments, ModelArguments
from minigpt.corpus import BUILTIN_CORPORA
from minigpt.one_step import StepByHand, first_step, training_step_by_hand
from space.binding import bind
from space.context import AppContext
from space.job_inputs import TrainForm, check_choices, check_memory, checked_numbers
from space.texts import T, app_error, fmt, fmt_int, fmt_num, msg, request_lang

MAX_BATCH = 16  # sequences in the panel's batch, whatever the form says


def one_step(ctx: AppContext, corpus_source, preset, tokenizer_type, vocab_size, batch_size, learning_rate,
             block_size, seed, request: gr.Request = None) -> str:
    """One training step by hand on a batch of the chosen built-in corpus, with the form's model and settings
    (at most 16 sequences): the logits of a few positions, the batch's cross entropy, the gradient norm of each
    layer, how far each layer's weights moved, and the loss on the same batch after the step."""
    lang = request_lang(request)
    form = replace(TrainForm(), corpus_source=corpus_source, preset=preset, tokenizer_type=tokenizer_type,
                   vocab_size=vocab_size, batch_size=batch_size, learning_rate=learning_rate,
                   block_size=block_size, seed=seed)
    check_choices(lang, form)
    if form.corpus_source not in BUILTIN_CORPORA:
        raise app_error(lang, msg(lang, "one_step_builtin_only"))
    numbers = checked_numbers(lang, form)
    batch = min(numbers["per_device_train_batch_size"], MAX_BATCH)
    check_memory(ctx, lang, form.preset, numbers["vocab_size"], numbers["block_size"], batch)
    with tempfile.TemporaryDirectory(dir=ctx.tmp_dir) as unused_output:  # the Trainer wants a folder; none is written
        args = MiniGPTTrainingArguments(
            output_dir=unused_output, per_device_train_batch_size=batch, learning_rate=numbers["learning_rate"],
            seed=numbers["seed"], report_to="none", disable_tqdm=True, dataloader_num_workers=0, save_strategy="no")
        start = first_step(ModelArguments(preset=form.preset, tokenizer_type=form.tokenizer_type,
                                          vocab_size=numbers["vocab_size"]),
                           DataArguments(builtin_corpus=form.corpus_source, block_size=numbers["block_size"]), args)
        return step_html(training_step_by_hand(start), lang)


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _code(text: str) -> str:
    return f"<code>{escape(text.replace(chr(10), '⏎'))}</code>"


def step_html(step: StepByHand, lang: str) -> str:
    """The step as five numbered parts, numbers in the reader's format."""
    def small(value):
        return fmt(value, lang, ".2e")

    positions = _table(
        [msg(lang, "os_read"), msg(lang, "os_target"), msg(lang, "os_logit"), msg(lang, "os_p"), msg(lang, "os_top")],
        [[_code(p.context), _code(p.target), fmt_num(p.target_logit, lang, 3),
          fmt_num(p.target_probability, lang, 4),
          ", ".join(f"{_code(token)} {fmt_num(prob, lang, 3)}" for token, prob in p.top)] for p in step.positions])
    layers = _table(
        [msg(lang, "os_layer"), msg(lang, "os_grad"), msg(lang, "os_moved"), msg(lang, "os_relative")],
        [[_code(layer), small(step.grad_norms.get(layer, 0.0)), small(step.weight_changes[layer]),
          small(step.relative_changes[layer])] for layer in step.weight_changes])
    parts = [
        (msg(lang, "os_forward", batch=fmt_int(step.batch_shape[0], lang), tokens=fmt_int(step.batch_shape[1], lang),
             vocab=fmt_int(step.vocab_size, lang)), positions),
        (msg(lang, "os_loss", loss=fmt_num(step.loss, lang, 4), model_loss=fmt_num(step.model_loss, lang, 4),
             uniform=fmt_num(step.uniform_loss, lang, 4)),
         ""),
        (msg(lang, "os_backward", total=fmt_num(step.total_grad_norm, lang, 3),
             clip=fmt_num(step.max_grad_norm, lang, 1)), ""),
        (msg(lang, "os_update", lr=fmt(step.learning_rate, lang, "g")), layers),
        (msg(lang, "os_after", loss=fmt_num(step.loss, lang, 4), after=fmt_num(step.loss_after, lang, 4)), ""),
    ]
    return '<div class="mg-one-step">' + "".join(f"<p>{text}</p>{table}" for text, table in parts) + "</div>"


def build_one_step_panel(ctx: AppContext, form: dict) -> None:
    """The panel, under the Train form whose inputs it reads (`form`: the form's components by TrainForm's names)."""
    with gr.Accordion(T("one_step"), open=False):
        gr.Markdown(T("one_step_help"))
        button = gr.Button(T("one_step_button"), elem_id="one-step-btn")
        report = gr.HTML("", elem_id="one-step")
    names = ["corpus_source", "preset", "tokenizer_type", "vocab_size", "batch_size", "learning_rate", "block_size",
             "seed"]
    button.click(bind(one_step, ctx), [form[name] for name in names], report, api_name="one_training_step",
                 concurrency_id="one_step", concurrency_limit=1)
