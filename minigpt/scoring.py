"""Bits per byte: a model's cross entropy over the exact bytes of a text, so that tokenizers of different
granularity (characters, a small BPE, GPT-2's) compare fairly. One definition for a finished run's
eval_bits_per_byte and for the benchmark's quality score."""

import math

import torch


@torch.inference_mode()
def stream_bits_per_byte(model, ids: list[int], n_bytes: int, start_id: int, window: int,
                         batch_size: int = 32) -> float:
    """Bits per byte of the token stream `ids`, which spells exactly `n_bytes` bytes: the stream, after `start_id`
    (the end-of-text token: how a document begins), cut into windows of `window` tokens, each window also reading
    the last token of the one before, so that every token of `ids` is predicted once. Tokens that spell no bytes
    (an end-of-text between documents) are predicted too."""
    device = next(model.parameters()).device
    stream = torch.tensor([start_id, *ids], device=device)
    windows = [stream[i: i + window + 1] for i in range(0, len(ids), window)]
    was_training = model.training
    model.eval()
    nats = 0.0
    for i in range(0, len(windows), batch_size):
        group = windows[i: i + batch_size]
        for length in sorted({len(w) for w in group}):  # the last window is shorter
            batch = torch.stack([w for w in group if len(w) == length])
            logits = model(input_ids=batch[:, :-1]).logits
            nats += torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), batch[:, 1:].flatten(),
                                                      reduction="sum").item()
    model.train(was_training)
    return nats / math.log(2) / n_bytes


def text_bits_per_byte(model, tokenizer, text: str, batch_size: int = 32) -> float:
    """Bits per byte over exactly `text`, in windows of the model's context. The tokenizer must give the text back
    byte for byte."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if tokenizer.decode(ids) != text:
        raise ValueError("the tokenizer does not round-trip the validation text: bits per byte would not be exact")
    return stream_bits_per_byte(model, ids, len(text.encode("utf-8")), tokenizer.eos_token_id,
                                model.config.max_position_embeddings, batch_size)


def blocks_bits_per_byte(model, blocks, tokenizer, block_size: int, batch_size: int = 32) -> float:
    """Bits per byte over the text that the validation `blocks` hold (consecutive blocks of one token stream, in
    reading order): their tokens as one stream, in windows of `block_size`, over the bytes they spell."""
    ids = [token for row in blocks["input_ids"] for token in row]
    n_bytes = len(tokenizer.decode(ids, skip_special_tokens=True).encode("utf-8"))
    return stream_bits_per_byte(model, ids, n_bytes, tokenizer.eos_token_id, block_size, batch_size)
