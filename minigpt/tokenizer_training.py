"""Tokenizers trained on the training split: byte-level BPE (GPT-2's recipe) or one token per character (the
book's), wrapped for transformers.

Training reads the split as a stream of batches, at most its first `sample_mb` MB, so that its memory is bounded
by that setting and not by the corpus; with a cache folder, the trained tokenizer is kept there, keyed by the
split's fingerprint and the settings, and a second run on the same corpus loads it instead of training again.
"""

import logging
import os
from pathlib import Path

import datasets
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from minigpt.corpus import CorpusError, load_text_datasets
from minigpt.data_progress import ProgressHook, ProgressMeter, text_bytes
from minigpt.fingerprints import cache_key

EOS_TOKEN = "<|endoftext|>"  # GPT-2's name; it doubles as bos since nothing is prepended
PAD_TOKEN = "<|pad|>"  # separate from eos so that padding never hides a real end of text
UNK_TOKEN = "<|unk|>"  # char level only: characters the train split never showed

logger = logging.getLogger("minigpt")

_ROWS_PER_BATCH = 64  # pieces of text are at most 64 Ki characters: a batch is a few MB at most
_FORMAT = "minigpt-tokenizer-v1"  # bump when training changes, to leave old cached tokenizers behind


def train_tokenizer(
    texts: datasets.Dataset | datasets.IterableDataset,
    kind: str = "bpe",
    vocab_size: int = 4096,
    *,
    sample_mb: float | None = None,
    cache_dir: str | None = None,
    show_progress: bool = False,
    on_progress: ProgressHook | None = None,
) -> PreTrainedTokenizerFast:
    """Train a tokenizer on `texts` (the train split only, column "text") and wrap it for transformers.

    kind="bpe": byte-level BPE with at most `vocab_size` tokens (GPT-2's recipe).
    kind="char": one token per distinct character, as in the book; the text decides the
    vocabulary size, so `vocab_size` is not used.
    sample_mb: train on the first this many MB of `texts` only (whole rows, in order); None: all of it.
    cache_dir: keep the trained tokenizer there and reuse it for the same split and settings (map-style
    datasets only: a stream has no fingerprint).
    """
    if kind not in ("bpe", "char"):
        raise CorpusError(f"unknown tokenizer kind {kind!r}: use 'bpe' or 'char'")
    smallest = len(pre_tokenizers.ByteLevel.alphabet()) + 2
    if kind == "bpe" and vocab_size < smallest:
        raise CorpusError(f"--vocab_size {vocab_size} is too small for byte-level BPE: use at least {smallest}")
    unk_token = UNK_TOKEN if kind == "char" else None
    cached = None
    if cache_dir is not None and isinstance(texts, datasets.Dataset):
        key = cache_key("tokenizer", {"format": _FORMAT, "texts": texts._fingerprint, "kind": kind,
                                      "vocab_size": vocab_size if kind == "bpe" else None, "sample_mb": sample_mb})
        cached = Path(cache_dir) / f"{key}.json"
        if cached.is_file():
            logger.info("The tokenizer this corpus trained before: %s", cached)
            return _wrap(Tokenizer.from_file(str(cached)), unk_token)

    limit = None if sample_mb is None else round(sample_mb * 1e6)
    total = text_bytes(texts) if isinstance(texts, datasets.Dataset) else None
    if limit is not None and (total is None or total > limit):
        logger.info("The tokenizer is trained on the first %g MB of the training text (--tokenizer_sample_mb)",
                    sample_mb)
        total = limit
    with ProgressMeter("training the tokenizer", total, show=show_progress, hook=on_progress) as meter:
        batches = _sample(texts, limit, meter)
        tokenizer = _train_bpe(batches, vocab_size) if kind == "bpe" else _build_char(batches)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(f".{os.getpid()}.tmp")
        tokenizer.save(str(partial))
        partial.replace(cached)
    return _wrap(tokenizer, unk_token)


def builtin_tokenizer(vocab_size: int = 2048, corpus: str = "python-reference") -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on a built-in corpus (a fraction of a second for the Python reference):
    the tokenizer of a model shown untrained."""
    return train_tokenizer(load_text_datasets(builtin_corpus_name=corpus)["train"], kind="bpe", vocab_size=vocab_size)


def _sample(texts, limit: int | None, meter: ProgressMeter):
    """Batches of texts, up to the first `limit` bytes (the row that crosses it included); batches keep memory
    flat: no single list of every document."""
    seen = 0
    for batch in texts.iter(batch_size=_ROWS_PER_BATCH):
        kept = []
        for text in batch["text"]:
            if limit is not None and seen >= limit:
                break
            kept.append(text)
            size = len(text.encode("utf-8"))
            seen += size
            meter.update(size)
        if kept:
            yield kept
        if limit is not None and seen >= limit:
            return


def _train_bpe(batches, vocab_size: int) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        # All 256 bytes up front: any text, even unseen characters, stays encodable.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(batches, trainer=trainer)
    return tokenizer


def _build_char(batches) -> Tokenizer:
    characters: set[str] = set()
    for batch in batches:
        for text in batch:
            characters.update(text)
    # Special tokens first, then the characters in sorted order, as the book builds `stoi`.
    vocabulary = [EOS_TOKEN, PAD_TOKEN, UNK_TOKEN, *sorted(characters)]
    tokenizer = Tokenizer(models.WordLevel({token: i for i, token in enumerate(vocabulary)}, unk_token=UNK_TOKEN))
    # Every character is its own piece ([\s\S] also matches newlines, unlike "."),
    # and Fuse glues the pieces back without the spaces WordLevel's default would insert.
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    # Marked special: "<|endoftext|>" in a text is then one token, not thirteen characters.
    tokenizer.add_special_tokens([EOS_TOKEN, PAD_TOKEN, UNK_TOKEN])
    return tokenizer


def _wrap(tokenizer: Tokenizer, unk_token: str | None) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=unk_token,
        # The clean-up would turn "a , b" into "a, b": decoding must give back the exact text.
        clean_up_tokenization_spaces=False,
    )
