"""Corpora and tokenizers: the first half of the data's way through MiniGPT.

    text source -> DatasetDict(train, validation) -> tokenizer trained on train -> block_size chunks

The built-in corpus is the Python Language Reference that every CPython ships
(`pydoc_data.topics`), so the default run needs no download. Local files
(.txt, .jsonl/.json, .csv, .parquet) and Hub datasets go through
`datasets.load_dataset`. Every problem with the user's data is raised as a
`CorpusError` whose one-line message names the file or flag to change.
"""

from __future__ import annotations

import codecs
import hashlib
import itertools
import json
import os
import shutil
import tempfile
from functools import partial
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
from datasets.exceptions import DatasetNotFoundError, DatasetsError
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

BUILTIN_CORPUS_NAME = "python-reference"

EOS_TOKEN = "<|endoftext|>"  # GPT-2's name; it doubles as bos since nothing is prepended
PAD_TOKEN = "<|pad|>"  # separate from eos so that padding never hides a real end of text
UNK_TOKEN = "<|unk|>"  # char level only: characters the train split never showed

# How each file extension is read; .txt documents are the paragraphs (blank-line separated),
# so that one big text file still yields enough pieces for a validation split.
# Parquet is binary (its strings are UTF-8 by specification); the others are checked as UTF-8.
_FILE_LOADERS = {
    ".txt": ("text", {"sample_by": "paragraph"}),
    ".jsonl": ("json", {}),
    ".json": ("json", {}),
    ".csv": ("csv", {}),
    ".parquet": ("parquet", {}),
}

_TEXT_BATCH_SIZE = 1000  # documents per batch when training tokenizers and tokenizing
_CACHE_FORMAT = "minigpt-chunks-v1"  # bump when the chunking changes, to invalidate old caches


class CorpusError(ValueError):
    """One-line, actionable message about bad input data."""


# ---------------------------------------------------------------------------
# Loading text into DatasetDict(train, validation)
# ---------------------------------------------------------------------------


def builtin_corpus_text() -> str:
    """The Python Language Reference shipped with CPython, topics joined in a fixed order."""
    return "\n\n".join(_builtin_documents())


def _builtin_documents() -> list[str]:
    # Imported here: pydoc_data is only needed when the built-in corpus is used.
    from pydoc_data.topics import topics

    # Sorted keys: the dict's order is an accident of how CPython generated it. Some topics
    # share one text ("if" and "else"); keeping it once stops it landing in both splits.
    return list(dict.fromkeys(topics[key].strip() for key in sorted(topics)))


def load_text_datasets(
    train_file: str | None = None,
    validation_file: str | None = None,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    text_column: str = "text",
    validation_split_percentage: float = 10,
    seed: int = 42,
    max_train_samples: int | None = None,
) -> datasets.DatasetDict:
    """Load the corpus as DatasetDict(train, validation), each with one str column "text".

    Without a validation file or split, `validation_split_percentage` % of the documents
    (at least one) are held out, chosen with `seed`. The split happens here, before any
    tokenizer sees the text, so the validation loss measures text the model never met.
    """
    if not 0 < validation_split_percentage < 100:
        raise CorpusError(
            f"--validation_split_percentage must be between 0 and 100 (exclusive), "
            f"got {validation_split_percentage}"
        )
    if max_train_samples is not None and max_train_samples < 1:
        raise CorpusError(f"--max_train_samples must be at least 1, got {max_train_samples}")
    train, validation = _load_sources(
        train_file, validation_file, dataset_name, dataset_config_name, text_column
    )
    if validation is None:
        train, validation = _split_off_validation(train, validation_split_percentage, seed)
    if max_train_samples is not None:
        train = train.select(range(min(max_train_samples, len(train))))
    return datasets.DatasetDict(train=train, validation=validation)


def _load_sources(train_file, validation_file, dataset_name, dataset_config_name, text_column):
    """(train, validation or None), each a cleaned one-column Dataset."""
    if dataset_name and (train_file or validation_file):
        raise CorpusError("pass either --dataset_name or --train_file/--validation_file, not both")
    if validation_file and not train_file:
        raise CorpusError("--validation_file needs a --train_file to go with it")
    if dataset_name:
        return _load_hub(dataset_name, dataset_config_name, text_column)
    if train_file:
        train = _load_file(train_file, "--train_file", text_column)
        validation = _load_file(validation_file, "--validation_file", text_column) if validation_file else None
        return train, validation
    builtin = datasets.Dataset.from_dict({"text": _builtin_documents()})
    return builtin, None


def _load_file(path: str, flag: str, text_column: str) -> datasets.Dataset:
    if not Path(path).is_file():
        raise CorpusError(f"{flag} {path}: file not found")
    extension = Path(path).suffix.lower()
    if extension not in _FILE_LOADERS:
        raise CorpusError(
            f"{flag} {path}: unsupported extension {extension or '(none)'!r}; "
            f"use one of {', '.join(_FILE_LOADERS)}"
        )
    builder, options = _FILE_LOADERS[extension]
    if builder != "parquet":
        _check_utf8(path, flag)
    try:
        dataset = datasets.load_dataset(builder, data_files=path, split="train", **options)
    except (DatasetsError, pa.ArrowException) as error:
        raise _unreadable_file_error(path, flag, builder, error) from error
    # The text loader always names its column "text", whatever --text_column says.
    return _clean(dataset, "text" if builder == "text" else text_column, f"{flag} {path}")


def _check_utf8(path: str, flag: str) -> None:
    """Fail early with the position of the first bad byte.

    Checked here rather than left to the loaders: the text and csv loaders bury the
    UnicodeDecodeError in a generic DatasetGenerationError, and the json loader lets
    invalid bytes into the Arrow table, where they only blow up later.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0  # file offset of the bytes the decoder has not yet seen
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            pending = len(decoder.getstate()[0])  # a character cut by the previous chunk
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as error:
                raise CorpusError(
                    f"{flag} {path}: the file is not UTF-8 text (bad byte at offset "
                    f"{offset - pending + error.start}); re-save it as UTF-8"
                ) from None
            offset += len(chunk)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise CorpusError(f"{flag} {path}: the file ends inside a UTF-8 character; re-save it as UTF-8") from None


def _unreadable_file_error(path: str, flag: str, builder: str, error: BaseException) -> CorpusError:
    """Turn a loader failure (often wrapped in DatasetGenerationError) into a one-line message."""
    cause = error
    while cause.__cause__ or cause.__context__:
        cause = cause.__cause__ or cause.__context__
    first_line = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
    return CorpusError(f"{flag} {path}: could not read it as {builder}: {first_line}")


def _load_hub(dataset_name: str, config_name: str | None, text_column: str):
    source = f"--dataset_name {dataset_name}"
    try:
        splits = datasets.load_dataset(dataset_name, config_name)
    except (ConnectionError, DatasetNotFoundError, FileNotFoundError) as error:
        raise CorpusError(
            f"{source}: the dataset could not be reached ({type(error).__name__}); "
            f"check the name and the network, or use --train_file with a local file"
        ) from error
    if "train" not in splits:
        raise CorpusError(f"{source} has no 'train' split (it has: {', '.join(splits)})")
    train = _clean(splits["train"], text_column, source)
    validation = _clean(splits["validation"], text_column, source) if "validation" in splits else None
    return train, validation


def _clean(dataset: datasets.Dataset, text_column: str, source: str) -> datasets.Dataset:
    """Keep only the text column, renamed "text", without blank documents."""
    if text_column not in dataset.column_names:
        raise CorpusError(
            f"{source} has no column {text_column!r} (columns: {', '.join(dataset.column_names)}); "
            f"pick one with --text_column"
        )
    feature = dataset.features[text_column]
    if getattr(feature, "dtype", None) not in ("string", "large_string"):
        raise CorpusError(
            f"{source}: column {text_column!r} holds {feature}, not text; pick another with --text_column"
        )
    dataset = dataset.select_columns([text_column])
    if text_column != "text":
        dataset = dataset.rename_column(text_column, "text")
    dataset = dataset.filter(_has_text, batched=True, input_columns="text")
    if len(dataset) == 0:
        raise CorpusError(f"{source} is empty (no non-whitespace text); add text or pass another source")
    return dataset


def _has_text(texts: list[str | None]) -> list[bool]:
    # CSV cells can be missing (None); whitespace-only documents would only add eos tokens.
    return [bool(text and not text.isspace()) for text in texts]


def _split_off_validation(documents: datasets.Dataset, percentage: float, seed: int):
    """Hold out whole documents; both parts keep the original reading order."""
    count = len(documents)
    if count < 2:
        raise CorpusError(
            "the corpus is a single document, so no validation split can be made: "
            "separate paragraphs with blank lines or pass --validation_file"
        )
    validation_count = min(count - 1, max(1, round(count * percentage / 100)))
    held_out = np.random.default_rng(seed).permutation(count)[:validation_count]
    is_validation = np.zeros(count, dtype=bool)
    is_validation[held_out] = True
    return (
        documents.select(np.flatnonzero(~is_validation)),
        documents.select(np.flatnonzero(is_validation)),
    )


def describe_source(
    train_file: str | None = None,
    validation_file: str | None = None,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
) -> str:
    """A short name of the corpus for model cards and the app."""
    if dataset_name:
        config = f"/{dataset_config_name}" if dataset_config_name else ""
        return f"{dataset_name}{config} (Hugging Face Hub)"
    if train_file:
        validation = f", validation: {Path(validation_file).name}" if validation_file else ""
        return f"{Path(train_file).name}{validation}"
    return f"{BUILTIN_CORPUS_NAME} (built-in)"


# ---------------------------------------------------------------------------
# Tokenizers
# ---------------------------------------------------------------------------


def train_tokenizer(texts: datasets.Dataset, kind: str = "bpe", vocab_size: int = 4096) -> PreTrainedTokenizerFast:
    """Train a tokenizer on `texts` (the train split only) and wrap it for transformers.

    kind="bpe": byte-level BPE with at most `vocab_size` tokens (GPT-2's recipe).
    kind="char": one token per distinct character, as in the book; the text decides the
    vocabulary size, so `vocab_size` is not used.
    """
    if kind == "bpe":
        return _wrap(_train_bpe(texts, vocab_size), unk_token=None)
    if kind == "char":
        return _wrap(_build_char(texts), unk_token=UNK_TOKEN)
    raise CorpusError(f"unknown tokenizer kind {kind!r}: use 'bpe' or 'char'")


def _text_batches(texts: datasets.Dataset):
    # Batches keep memory flat on large corpora: no single list of every document.
    for batch in texts.iter(batch_size=_TEXT_BATCH_SIZE):
        yield batch["text"]


def _train_bpe(texts: datasets.Dataset, vocab_size: int) -> Tokenizer:
    special_tokens = [EOS_TOKEN, PAD_TOKEN]
    smallest = len(pre_tokenizers.ByteLevel.alphabet()) + len(special_tokens)
    if vocab_size < smallest:
        raise CorpusError(f"--vocab_size {vocab_size} is too small for byte-level BPE: use at least {smallest}")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        # All 256 bytes up front: any text, even unseen characters, stays encodable.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_text_batches(texts), trainer=trainer, length=len(texts))
    return tokenizer


def _build_char(texts: datasets.Dataset) -> Tokenizer:
    characters: set[str] = set()
    for batch in _text_batches(texts):
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


# ---------------------------------------------------------------------------
# Tokenizing and grouping into blocks
# ---------------------------------------------------------------------------


def tokenize_and_group(
    raw: datasets.DatasetDict,
    tokenizer: PreTrainedTokenizerFast,
    block_size: int,
    cache_dir: str | None = None,
    num_proc: int | None = None,
) -> datasets.DatasetDict:
    """Tokenize every split into rows of exactly `block_size` token ids (column "input_ids").

    Documents are joined with eos after each one, so the model learns where a text ends;
    each map batch of documents drops its tail shorter than a block (as transformers'
    run_clm example does). With `cache_dir`, the result is stored under a key made of the
    corpus, the tokenizer and block_size, and reused next time.
    """
    if block_size < 1:
        raise CorpusError(f"--block_size must be at least 1, got {block_size}")
    if tokenizer.eos_token_id is None:
        raise CorpusError("the tokenizer has no eos_token to put between documents")
    if cache_dir is None:
        return _checked(_group(raw, tokenizer, block_size, num_proc), raw, tokenizer, block_size)
    cached = Path(cache_dir) / _cache_key(raw, tokenizer, block_size)
    if cached.is_dir():
        return datasets.load_from_disk(str(cached))
    grouped = _checked(_group(raw, tokenizer, block_size, num_proc), raw, tokenizer, block_size)
    _save_atomically(grouped, cached)
    return datasets.load_from_disk(str(cached))


def _group(raw: datasets.DatasetDict, tokenizer, block_size: int, num_proc: int | None) -> datasets.DatasetDict:
    return raw.map(
        partial(_tokenize_and_chunk, tokenizer=tokenizer, block_size=block_size),
        batched=True,
        batch_size=_TEXT_BATCH_SIZE,
        input_columns="text",
        remove_columns=raw["train"].column_names,
        num_proc=num_proc,
        desc=f"Tokenizing into blocks of {block_size}",
    )


def _tokenize_and_chunk(texts: list[str], tokenizer, block_size: int) -> dict[str, list[list[int]]]:
    """One batch of documents -> as many full blocks as their tokens fill."""
    documents = tokenizer(texts, add_special_tokens=False)["input_ids"]
    eos = [tokenizer.eos_token_id]
    stream = list(itertools.chain.from_iterable(ids + eos for ids in documents))
    usable = len(stream) - len(stream) % block_size
    return {"input_ids": [stream[start : start + block_size] for start in range(0, usable, block_size)]}


def _checked(grouped, raw, tokenizer, block_size: int) -> datasets.DatasetDict:
    """Refuse splits without a single full block: training or evaluating on nothing is a silent failure."""
    if len(grouped["train"]) == 0:
        raise CorpusError(
            f"the training text has only {_token_count(raw['train'], tokenizer)} tokens, "
            f"less than one block of {block_size}: lower --block_size or add text"
        )
    if len(grouped["validation"]) == 0:
        raise CorpusError(
            f"the validation split has only {_token_count(raw['validation'], tokenizer)} tokens, "
            f"less than one block of {block_size}: raise --validation_split_percentage "
            f"(or give a longer --validation_file) or lower --block_size"
        )
    return grouped


def _token_count(split: datasets.Dataset, tokenizer) -> int:
    # Only called to explain an error, so tokenizing again here costs nothing in a normal run.
    return sum(
        len(ids) + 1
        for batch in _text_batches(split)
        for ids in tokenizer(batch, add_special_tokens=False)["input_ids"]
    )


def _cache_key(raw: datasets.DatasetDict, tokenizer, block_size: int) -> str:
    """Same corpus + same tokenizer + same block_size -> same key, in any process.

    datasets' fingerprints are derived from the content for in-memory datasets (the built-in
    corpus) and from the files for loaded ones, and the tokenizer's JSON holds its whole
    vocabulary, merges and pipeline.
    """
    parts = {
        "format": _CACHE_FORMAT,
        "splits": {name: split._fingerprint for name, split in sorted(raw.items())},
        "tokenizer": tokenizer.backend_tokenizer.to_str(),
        "eos": tokenizer.eos_token_id,
        "block_size": block_size,
    }
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return f"tokenized-{digest[:24]}"


def _save_atomically(grouped: datasets.DatasetDict, target: Path) -> None:
    """Write next to the target, then rename: a crash never leaves a half-written cache."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f"{target.name}.partial-", dir=target.parent)
    try:
        grouped.save_to_disk(staging)
        os.replace(staging, target)
    except OSError:
        # Another process finished the same cache first: theirs is as good as ours.
        if not target.is_dir():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
