"""Tokenized text in blocks of block_size token ids: what the model trains and is evaluated on.

    texts (rows, or pieces of long texts) --datasets.map(tokenize, batched, num_proc)--> token ids per piece,
    eos after each document --> ONE stream, cut into consecutive blocks of block_size (only its last, shorter
    tail is dropped) --> Arrow on disk, in the smallest unsigned integer type that holds the vocabulary,
    memory-mapped for training

The split is tokenized in chunks of about _CHUNK_BYTES of text, one `map` each, each read through a memory map
of its own, so that only a chunk of the text is ever in memory (bounded by settings, not by the corpus), and
progress is shown in MB/s between chunks. By default the map runs in this process and the tokenizer's own threads
use every core: forked worker processes (num_proc > 1) each carry the parent's memory again, which on this
project's 2-core machine took the run's processes together past 2 GB, and side by side neither way was
consistently faster there. datasets' map cannot carry a block's tail from one batch to the next, so the blocks are cut here, from the
tokenized chunks read back one record batch at a time. With a cache folder, each split's blocks are kept there,
keyed by the split's fingerprint, the tokenizer and block_size; a second run loads them.
"""

import contextlib
import logging
import os
import pickle
import tempfile
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
from datasets.arrow_writer import ArrowWriter
from tokenizers import Tokenizer

from minigpt.corpus import CorpusError
from minigpt.data_progress import ProgressHook, ProgressMeter, datasets_progress_bars_off, text_bytes
from minigpt.fingerprints import cache_key
from minigpt.text_pieces import split_text

logger = logging.getLogger("minigpt")

_FORMAT = "minigpt-blocks-v3"  # bump when tokenizing or grouping changes, to leave old caches behind
_ROWS_PER_BATCH = 64  # rows per map batch: pieces are at most 64 Ki characters, so a batch is a few MB at most
_CHUNK_BYTES = 32 * 2**20  # text per map call: bounds what each worker maps, and spaces the progress updates
_BYTES_PER_PROCESS = 4 * 2**20  # with num_proc: below this much text a process, starting it costs more than it saves


def token_dtype(vocabulary_size: int) -> str:
    """The smallest unsigned integer type that holds every token id."""
    for dtype in ("uint8", "uint16", "uint32"):
        if vocabulary_size - 1 <= np.iinfo(dtype).max:
            return dtype
    return "uint64"


def _encoder(tokenizer) -> Tokenizer:
    """The tokenizer's own Rust tokenizer, without any truncation or padding a saved tokenizer may carry."""
    encoder = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    encoder.no_truncation()
    encoder.no_padding()
    return encoder


def _token_rows(texts: list[str], ends: list[bool] | None, encoder: Tokenizer, eos_id: int,
                dtype: str) -> pa.ListArray:
    """Texts (documents, or pieces of one with `ends` saying which piece ends its document) -> one row of token
    ids per piece of text, with eos after the last piece of each document. A long text is cut into pieces first
    (minigpt.text_pieces: the pieces' tokens are the text's tokens)."""
    pieces, eos_after = [], []
    for text, end in zip(texts, ends if ends is not None else [True] * len(texts)):  # rows: each one a document
        parts = list(split_text([text])) or [""]
        pieces += parts
        eos_after += [False] * (len(parts) - 1) + [end]
    encodings = encoder.encode_batch_fast(pieces, add_special_tokens=False)
    ids = [np.asarray(encoding.ids + [eos_id] if eos else encoding.ids, dtype=dtype)
           for encoding, eos in zip(encodings, eos_after)]
    offsets = np.concatenate([[0], np.cumsum([len(row) for row in ids])]).astype(np.int32)
    values = np.concatenate(ids) if ids else np.empty(0, dtype)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))


def _tokenize_table(batch: pa.Table, encoder: Tokenizer, eos_id: int, dtype: str) -> pa.Table:
    """_token_rows for datasets.map over Arrow batches."""
    ends = batch.column("document_end").to_pylist() if "document_end" in batch.column_names else None
    return pa.table({"input_ids": _token_rows(batch.column("text").to_pylist(), ends, encoder, eos_id, dtype)})


def _cut_blocks(carry: np.ndarray, ids: np.ndarray, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(the full blocks of carry + ids, as rows of a 2-D array; what is left over, carried to the next part)."""
    stream = np.concatenate([carry, ids])
    usable = len(stream) - len(stream) % block_size
    return stream[:usable].reshape(-1, block_size), stream[usable:].copy()


class _BlockWriter:
    """Cuts a stream of token ids, arriving in parts, into consecutive blocks written to an Arrow file."""

    def __init__(self, path: Path, block_size: int, dtype: str):
        self.block_size = block_size
        self.writer = ArrowWriter(features=_block_features(dtype, block_size), path=str(path))
        self.carry = np.empty(0, dtype)
        self.blocks = 0

    def add(self, ids: np.ndarray) -> None:
        blocks, self.carry = _cut_blocks(self.carry, ids, self.block_size)
        if len(blocks):
            rows = pa.FixedSizeListArray.from_arrays(pa.array(blocks.reshape(-1)), self.block_size)
            self.writer.write_table(pa.table({"input_ids": rows}))
            self.blocks += len(blocks)

    @property
    def tokens(self) -> int:
        return self.blocks * self.block_size + len(self.carry)

    def close(self) -> None:
        self.writer.finalize()


def _block_features(dtype: str, block_size: int) -> datasets.Features:
    return datasets.Features({"input_ids": datasets.List(datasets.Value(dtype), length=block_size)})


def _read_token_rows(dataset: datasets.Dataset):
    """The token ids of a tokenized chunk, one record batch at a time, read from its files (buffered reads, not a
    memory map: what was read is freed after each batch)."""
    for cache_file in dataset.cache_files:
        with pa.OSFile(cache_file["filename"]) as source:
            for batch in pa.ipc.open_stream(source):
                yield batch.column("input_ids").flatten().to_numpy()


@contextlib.contextmanager
def _tokenizers_parallelism_off():
    """Worker processes tokenize one thread each. Set before they are forked, this also spares the tokenizers
    library's warning about forking after its threads were used (training the BPE uses them)."""
    previous = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = previous


def _on_its_own_memory_map(dataset: datasets.Dataset) -> datasets.Dataset:
    """The same rows, read through a memory map of their own (a pickle round trip reopens the Arrow files, as
    datasets does for its worker processes): the pages read through it leave this process's memory with it,
    instead of staying mapped for as long as the whole split is."""
    return pickle.loads(pickle.dumps(dataset))


def _tokenize_split(texts: datasets.Dataset, encoder: Tokenizer, eos_id: int, dtype: str, block_size: int,
                    path: Path, scratch: Path, num_proc: int, meter: ProgressMeter) -> int:
    """Tokenize `texts` into blocks written to `path`; returns the number of tokens in the stream."""
    writer = _BlockWriter(path, block_size, dtype)
    total = text_bytes(texts)
    rows_per_chunk = max(1, round(len(texts) * _CHUNK_BYTES / max(total, 1)))
    features = datasets.Features({"input_ids": datasets.List(datasets.Value(dtype))})  # one row per piece
    try:
        for index, start in enumerate(range(0, len(texts), rows_per_chunk)):
            chunk = texts.select(range(start, min(start + rows_per_chunk, len(texts))))
            chunk_bytes = text_bytes(chunk)
            processes = max(1, min(num_proc, chunk_bytes // _BYTES_PER_PROCESS, len(chunk)))
            if processes == 1 and chunk.cache_files:
                chunk = _on_its_own_memory_map(chunk)
            chunk_file = scratch / f"chunk-{index}.arrow"
            one_thread_each = _tokenizers_parallelism_off() if processes > 1 else contextlib.nullcontext()
            with one_thread_each, datasets_progress_bars_off():
                tokenized = chunk.with_format("arrow").map(
                    _tokenize_table, fn_kwargs={"encoder": encoder, "eos_id": eos_id, "dtype": dtype}, batched=True,
                    batch_size=_ROWS_PER_BATCH, remove_columns=chunk.column_names, features=features,
                    num_proc=processes if processes > 1 else None, cache_file_name=str(chunk_file),
                    load_from_cache_file=False, new_fingerprint=cache_key("chunk", [path.stem, index]),
                )
            for ids in _read_token_rows(tokenized):
                writer.add(ids)
            for cache_file in tokenized.cache_files:
                os.unlink(cache_file["filename"])
            meter.update(chunk_bytes)
    finally:
        writer.close()
    return writer.tokens


def tokenize_and_group(
    raw: datasets.DatasetDict,
    tokenizer,
    block_size: int,
    cache_dir: str | None = None,
    overwrite_cache: bool = False,
    num_proc: int | None = None,
    show_progress: bool = False,
    on_progress: ProgressHook | None = None,
) -> datasets.DatasetDict:
    """Tokenize every split into rows of exactly `block_size` token ids (column "input_ids").

    Each document ends with eos, so the model learns where a text ends (the pieces of one long text are one
    document: eos only after its last piece); the token stream of a split is cut into consecutive blocks and
    only its tail shorter than a block is dropped. num_proc: processes for tokenizing (datasets.map's num_proc;
    default: this one, the tokenizer's threads on every core).
    With `cache_dir`, each split's blocks are an Arrow file there, named by the split's fingerprint, the
    tokenizer and block_size, and later runs load it instead of tokenizing again (memory-mapped);
    `overwrite_cache` tokenizes again and rewrites the file (run_clm's flag). Without it, the blocks are
    loaded in memory.
    """
    if tokenizer.eos_token_id is None:
        raise CorpusError("the tokenizer has no eos_token to put between documents")
    dtype = token_dtype(len(tokenizer))
    names = {split: f"{_cache_key(texts, tokenizer, block_size)}-{split}.arrow" for split, texts in raw.items()}
    if cache_dir is not None and not overwrite_cache and all((Path(cache_dir) / n).is_file() for n in names.values()):
        logger.info("The blocks this corpus, tokenizer and block size gave before: %s", ", ".join(names.values()))
        return datasets.DatasetDict({split: datasets.Dataset.from_file(str(Path(cache_dir) / name))
                                     for split, name in names.items()})

    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
    encoder = _encoder(tokenizer)
    num_proc = num_proc or 1
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".tokenizing-") as scratch:
        tokens = {}
        for split, texts in raw.items():
            with ProgressMeter(f"tokenizing {split}", text_bytes(texts), show=show_progress,
                               hook=on_progress) as meter:
                tokens[split] = _tokenize_split(texts, encoder, tokenizer.eos_token_id, dtype, block_size,
                                                Path(scratch) / names[split], Path(scratch), num_proc, meter)
        _check_blocks(tokens, block_size)
        if cache_dir is None:
            return datasets.DatasetDict({split: datasets.Dataset.from_file(str(Path(scratch) / name), in_memory=True)
                                         for split, name in names.items()})
        for name in names.values():  # only now: a refused corpus leaves no cache behind
            os.replace(Path(scratch) / name, Path(cache_dir) / name)
    return datasets.DatasetDict({split: datasets.Dataset.from_file(str(Path(cache_dir) / name))
                                 for split, name in names.items()})


def check_text_fits(raw, block_size: int, batch_size: int) -> None:
    """Right after reading the corpus, before any tokenizer work: a split too short for one block, or a batch of
    more blocks than the training text can make, refused by an upper bound on the tokens (a byte-level or char
    token is at least one byte, plus one EOS per document). The counts after tokenizing are checked again."""
    most = {split: text_bytes(raw[split]) + raw[split].num_rows for split in ("train", "validation")
            if isinstance(raw[split], datasets.Dataset)}
    _check_blocks(most, block_size, at_most=True)
    if "train" in most and batch_size > most["train"] // block_size:
        raise CorpusError(f"--per_device_train_batch_size {batch_size} asks for more blocks than the training text "
                          f"can make (at most {most['train'] // block_size} of {block_size} tokens): lower it (or "
                          "--block_size), or add text")


def check_batch_fits(train_blocks: int, batch_size: int) -> None:
    """One batch takes at most every block of the training split (each step would otherwise be an epoch of
    fewer blocks than the batch)."""
    if batch_size > train_blocks:
        raise CorpusError(f"--per_device_train_batch_size {batch_size} is more than the training split's "
                          f"{train_blocks} blocks: lower it to at most {train_blocks} (or --block_size), or add text")


def _check_blocks(tokens: dict[str, int], block_size: int, at_most: bool = False) -> None:
    """Refuse splits without a single full block: training or evaluating on nothing is a silent failure."""
    few = "at most" if at_most else "only"
    if tokens.get("train", block_size) < block_size:
        raise CorpusError(
            f"the training text has {few} {tokens['train']} tokens, less than one block of {block_size}: "
            f"lower --block_size or add text"
        )
    if tokens.get("validation", block_size) < block_size:
        raise CorpusError(
            f"the validation split has {few} {tokens['validation']} tokens, less than one block of {block_size}: "
            f"raise --validation_split_percentage (or give a longer --validation_file) or lower --block_size"
        )


def _cache_key(texts: datasets.Dataset, tokenizer, block_size: int) -> str:
    """Same split + same tokenizer + same block_size -> same key, in any process: datasets' fingerprints follow
    the content (in-memory datasets), the files (loaded ones) or minigpt.corpus's own content hash (texts read in
    pieces); the tokenizer's JSON holds its whole vocabulary, merges and pipeline."""
    return cache_key("tokenized", {
        "format": _FORMAT,
        "texts": texts._fingerprint,
        "tokenizer": tokenizer.backend_tokenizer.to_str(),
        "eos": tokenizer.eos_token_id,
        "block_size": block_size,
    })


def _stream_of_blocks(texts: datasets.IterableDataset, encoder: Tokenizer, eos_id: int, dtype: str,
                      block_size: int):
    carry = np.empty(0, dtype)
    for batch in texts.iter(batch_size=_ROWS_PER_BATCH):
        ids = _token_rows(batch["text"], batch.get("document_end"), encoder, eos_id, dtype).flatten().to_numpy()
        blocks, carry = _cut_blocks(carry, ids, block_size)
        for block in blocks:
            yield {"input_ids": block.tolist()}


def stream_blocks(texts: datasets.IterableDataset, tokenizer, block_size: int) -> datasets.IterableDataset:
    """The same blocks as tokenize_and_group, made on the fly from a stream (--streaming): nothing on disk."""
    dtype = token_dtype(len(tokenizer))
    return datasets.IterableDataset.from_generator(
        _stream_of_blocks, features=_block_features(dtype, block_size),
        gen_kwargs={"texts": texts, "encoder": _encoder(tokenizer), "eos_id": tokenizer.eos_token_id,
                    "dtype": dtype, "block_size": block_size},
    )
