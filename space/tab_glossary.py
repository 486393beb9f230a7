"""The Glossary tab: the chapter's terms (cross entropy, perplexity, forward pass, backpropagation, batch, epoch,
sampling, checkpoint), each in a sentence or two and pointing to where the app shows it live. Static text in the
visitor's language (space/texts.py)."""

import gradio as gr

from space.texts import T


def build_glossary_tab() -> gr.Markdown:
    return gr.Markdown(T("glossary"), elem_id="glossary")
