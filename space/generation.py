"""Generation for the app: generate() streamed token by token from a thread, the checks of the decoding settings
and the prompt (messages in the reader's language), and each visitor's share of the generation slots."""

import contextlib
import threading

import torch
from transformers import StoppingCriteriaList, TextIteratorStreamer

from minigpt.teaching import DecodingSettings, StopOnEvent, TeachingError, encode_prompt
from space.fair_share import OverShare
from space.texts import WHAT, app_error, fmt_int, friendly, msg, warn
from space.visitors import visitor_id


@contextlib.contextmanager
def generation_slot(ctx, lang: str, request, profile, browser_id: str | None):
    """Hold one of the generation slots for this request's visitor and address (space/fair_share.py), or a
    visible error when they already hold their share."""
    visitor, client = visitor_id(request, profile, browser_id), ctx.client(request)
    try:
        ctx.generations.take(visitor, client)
    except OverShare as error:
        raise app_error(lang, msg(lang, f"generations_{error.kind}", n=error.limit)) from None
    try:
        yield
    finally:
        ctx.generations.give_back(visitor, client)


def stream_generate(model, tokenizer, ids: torch.LongTensor, settings: DecodingSettings,
                    cancel: threading.Event | None = None):
    """Yield the continuation decoded so far as it grows: generate() runs in a thread with transformers'
    TextIteratorStreamer (letters and spaces at once, token by token; other characters, and half of a multi-byte
    one, once the next space comes); beam search (no streamer in transformers) yields once. Setting `cancel` or
    closing this generator (a cancelled request) stops generate() at its next token."""
    closed = threading.Event()
    kwargs = settings.generate_kwargs(tokenizer)
    kwargs.update(attention_mask=torch.ones_like(ids),
                  stopping_criteria=StoppingCriteriaList([StopOnEvent(closed, cancel)]))
    if settings.strategy == "beam":
        with torch.no_grad():
            out = model.generate(ids, **kwargs)
        yield tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        return
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, timeout=300, skip_special_tokens=True)
    failure = []

    def run():
        try:
            with torch.no_grad():
                model.generate(ids, streamer=streamer, **kwargs)
        except Exception as error:  # surfaced in the consumer
            failure.append(error)
            streamer.end()

    worker = threading.Thread(target=run, name="minigpt-generate", daemon=True)
    worker.start()
    text = ""
    try:
        for piece in streamer:
            if piece:
                text += piece
                yield text
    finally:
        closed.set()
        worker.join(timeout=30)
    if failure:
        raise failure[0]


def checked_settings(lang, strategy, temperature, top_k, top_p, repetition_penalty, max_new_tokens, seed,
                     num_beams) -> DecodingSettings:
    try:
        settings = DecodingSettings(
            strategy=str(strategy), temperature=float(temperature), top_k=int(top_k), top_p=float(top_p),
            repetition_penalty=float(repetition_penalty), max_new_tokens=int(max_new_tokens), seed=int(seed),
            num_beams=int(num_beams),
        )
        return settings.validate()
    except (TypeError, ValueError) as error:
        raise app_error(lang, friendly(error, lang)) from None


def prepare_prompt(lang, tokenizer, model, prompt: str, settings: DecodingSettings) -> torch.LongTensor:
    context = model.config.max_position_embeddings
    try:
        ids = encode_prompt(tokenizer, prompt, context, reserve=1)
    except TeachingError as error:
        raise app_error(lang, friendly(error, lang)) from None
    room = context - ids.shape[1]
    if settings.max_new_tokens > room:
        warn(lang, msg(lang, "clipped", prompt=ids.shape[1], asked=settings.max_new_tokens, context=context,
                       given=room))
        settings.max_new_tokens = room
    return ids.to(model.device)


def check_length(lang: str, text, limit: int, what: str = "prompt") -> str:
    """Refuse a text longer than `limit` characters before it is tokenized (a 40 MB prompt costs nothing)."""
    text = text if isinstance(text, str) else str(text or "")
    if len(text) > limit:
        raise app_error(lang, msg(lang, "too_long", what=WHAT[lang][what], n=fmt_int(len(text), lang),
                                  limit=fmt_int(limit, lang)))
    return text
