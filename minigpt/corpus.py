"""Corpora and tokenizers: the first half of the data's way through MiniGPT.

    text source -> DatasetDict(train, validation) -> tokenizer trained on train -> block_size chunks

Two built-in corpora need no download: "machado" (two public-domain novels by Machado de Assis, shipped in
`minigpt/data/machado/`, the default) and "python-reference" (the Python Language Reference that every
CPython ships in `pydoc_data.topics`). Local files (.txt, .jsonl/.json, .csv, .parquet) and Hub datasets are
read through `datasets`. Every problem with the user's data is raised as a `CorpusError` whose one-line
message names the file or flag to change.

Text is modelled byte-exact. A .txt file (and each built-in novel) is ONE text, kept exactly as it is (blank
lines, indentation, line breaks); eos goes only between documents (files, rows of a table or a Hub dataset,
topics of the Python reference). Rows are held out for validation whole, chosen by the seed; texts are held out
at their end, the last N % of the corpus in reading order (as nanoGPT does), so the validation text is a
contiguous piece of the source.
"""

from __future__ import annotations

import codecs
import hashlib
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import datasets
import huggingface_hub
import numpy as np
import pyarrow as pa
from datasets.exceptions import DatasetNotFoundError, DatasetsError
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

DATA_DIR = Path(__file__).resolve().parent / "data"

EOS_TOKEN = "<|endoftext|>"  # GPT-2's name; it doubles as bos since nothing is prepended
PAD_TOKEN = "<|pad|>"  # separate from eos so that padding never hides a real end of text
UNK_TOKEN = "<|unk|>"  # char level only: characters the train split never showed

# How each table-like file extension is read; .txt files are read as one text each (see _read_text).
# Parquet is binary (its strings are UTF-8 by specification); the others are checked as UTF-8.
_TABLE_LOADERS = {
    ".jsonl": "json",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
}
_EXTENSIONS = (".txt", *_TABLE_LOADERS)

_TEXT_BATCH_SIZE = 1000  # documents per batch when training tokenizers and tokenizing
_CACHE_FORMAT = "minigpt-chunks-v2"  # bump when the chunking changes, to invalidate old caches

class CorpusError(ValueError):
    """One-line, actionable message about bad input data."""


# ---------------------------------------------------------------------------
# Loading text into DatasetDict(train, validation)
# ---------------------------------------------------------------------------


# The two novels and their md5 sums (also in data/machado/README.md): a damaged install fails loudly.
_MACHADO_FILES = {
    "quincas_borba.txt": "ccac62a93a5dfb5822e6a08301e27929",
    "dom_casmurro.txt": "bf289065e72100743ec1faec8b0e76da",
}


def _machado_novels() -> list[str]:
    novels = []
    for name, md5 in _MACHADO_FILES.items():
        data = (DATA_DIR / "machado" / name).read_bytes()
        if hashlib.md5(data).hexdigest() != md5:
            raise CorpusError(f"the built-in corpus file {name} is damaged (md5 differs); reinstall minigpt")
        novels.append(data.decode("utf-8"))
    return novels


def _python_reference_topics() -> list[str]:
    # Imported here: pydoc_data is only needed when this corpus is used.
    from pydoc_data.topics import topics

    # Sorted keys: the dict's order is an accident of how CPython generated it. Some topics
    # share one text ("if" and "else"); keeping it once stops it landing in both splits.
    return list(dict.fromkeys(topics[key].strip() for key in sorted(topics)))


@dataclass(frozen=True)
class BuiltinCorpus:
    name: str  # what --builtin_corpus takes
    language: str  # the app offers it first to visitors of this language
    title: str
    prompts: tuple[str, ...]  # continued at every evaluation
    documents: Callable[[], list[str]]
    texts: bool  # True: each document is a long text, held out at its end; False: rows, held out whole


BUILTIN_CORPORA = {
    "machado": BuiltinCorpus(
        "machado", "pt", "Machado de Assis: Quincas Borba (1891) and Dom Casmurro (1899)",
        ("Era uma vez", "Capitú"), _machado_novels, texts=True,
    ),
    "python-reference": BuiltinCorpus(
        "python-reference", "en", "the Python Language Reference (pydoc_data.topics)",
        ("The", "def"), _python_reference_topics, texts=False,
    ),
}
DEFAULT_BUILTIN_CORPUS = "machado"  # the book's readers come first


def builtin_corpus(name: str | None = None) -> BuiltinCorpus:
    name = name or DEFAULT_BUILTIN_CORPUS
    if name not in BUILTIN_CORPORA:
        raise CorpusError(f"--builtin_corpus {name!r} is unknown; choose one of: {', '.join(BUILTIN_CORPORA)}")
    return BUILTIN_CORPORA[name]


def builtin_documents(name: str | None = None) -> list[str]:
    """The documents of a built-in corpus, in reading order (the two novels; the reference's topics)."""
    return builtin_corpus(name).documents()


def load_text_datasets(
    train_file: str | None = None,
    validation_file: str | None = None,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    text_column: str = "text",
    validation_split_percentage: float = 10,
    seed: int = 42,
    max_train_samples: int | None = None,
    builtin_corpus_name: str | None = None,
    max_dataset_mb: float | None = None,
) -> datasets.DatasetDict:
    """Load the corpus as DatasetDict(train, validation), each with one str column "text".

    Without a file or a Hub dataset, the built-in corpus `builtin_corpus_name` (default: machado) is used.
    Without a validation file or split, `validation_split_percentage` % is held out: whole rows chosen with
    `seed` for tables, Hub datasets and the Python reference; the last % of the text, in reading order, for
    .txt files and the novels. The split happens here, before any tokenizer sees the text, so the validation
    loss measures text the model never met. With `max_dataset_mb`, a Hub dataset whose files are larger is
    refused before anything is downloaded.
    """
    if not 0 < validation_split_percentage < 100:
        raise CorpusError(
            f"--validation_split_percentage must be between 0 and 100 (exclusive), "
            f"got {validation_split_percentage}"
        )
    if max_dataset_mb is not None and not max_dataset_mb > 0:
        raise CorpusError(f"--max_dataset_mb must be positive, got {max_dataset_mb}")
    if max_train_samples is not None and max_train_samples < 1:
        raise CorpusError(f"--max_train_samples must be at least 1, got {max_train_samples}")
    train, validation, texts = _load_sources(
        train_file, validation_file, dataset_name, dataset_config_name, text_column, builtin_corpus_name,
        max_dataset_mb,
    )
    if validation is None:
        hold_out = _hold_out_text_end if texts else partial(_hold_out_rows, seed=seed)
        train, validation = hold_out(train, validation_split_percentage)
    if max_train_samples is not None:
        train = train.select(range(min(max_train_samples, len(train))))
    return datasets.DatasetDict(train=train, validation=validation)


def _load_sources(train_file, validation_file, dataset_name, dataset_config_name, text_column, builtin_name,
                  max_dataset_mb):
    """(train, validation or None, whether the documents are long texts), each a cleaned one-column Dataset."""
    if dataset_name and (train_file or validation_file):
        raise CorpusError("pass either --dataset_name or --train_file/--validation_file, not both")
    if validation_file and not train_file:
        raise CorpusError("--validation_file needs a --train_file to go with it")
    if builtin_name and (dataset_name or train_file):
        raise CorpusError("pass either --builtin_corpus or --train_file/--dataset_name, not both")
    if dataset_name:
        return *_load_hub(dataset_name, dataset_config_name, text_column, max_dataset_mb), False
    if train_file:
        train = _load_file(train_file, "--train_file", text_column)
        validation = _load_file(validation_file, "--validation_file", text_column) if validation_file else None
        return train, validation, Path(train_file).suffix.lower() == ".txt"
    corpus = builtin_corpus(builtin_name)
    return datasets.Dataset.from_dict({"text": corpus.documents()}), None, corpus.texts


def _load_file(path: str, flag: str, text_column: str) -> datasets.Dataset:
    if not Path(path).is_file():
        raise CorpusError(f"{flag} {path}: file not found")
    extension = Path(path).suffix.lower()
    if extension not in _EXTENSIONS:
        raise CorpusError(
            f"{flag} {path}: unsupported extension {extension or '(none)'!r}; use one of {', '.join(_EXTENSIONS)}"
        )
    if extension == ".txt":
        return _clean(_read_text(path, flag), "text", f"{flag} {path}")
    builder = _TABLE_LOADERS[extension]
    if builder != "parquet":
        _check_utf8(path, flag)
    try:
        dataset = datasets.load_dataset(builder, data_files=path, split="train")
    except (DatasetsError, pa.ArrowException) as error:
        raise _unreadable_file_error(path, flag, builder, error) from error
    return _clean(dataset, text_column, f"{flag} {path}")


def _read_text(path: str, flag: str) -> datasets.Dataset:
    """The whole file as one document, byte for byte: newline="" keeps "\r\n" as it is."""
    _check_utf8(path, flag)
    with open(path, encoding="utf-8", newline="") as file:
        return datasets.Dataset.from_dict({"text": [file.read()]})


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


def _check_hub_size(dataset_name: str, max_megabytes: float) -> None:
    """All the files of the Hub dataset's repository, summed: a bound on what loading it can download."""
    try:
        info = huggingface_hub.HfApi().dataset_info(dataset_name, files_metadata=True, timeout=30)
    except Exception as error:  # offline, DNS, HTTP 404...: the size is unknown, so nothing is downloaded
        raise _unreachable(dataset_name, error, " to check its size") from error
    megabytes = sum(sibling.size or 0 for sibling in info.siblings or ()) / 1e6
    if megabytes > max_megabytes:
        raise CorpusError(
            f"--dataset_name {dataset_name} is {megabytes:,.0f} MB on the Hub, over the limit of {max_megabytes:g} "
            f"MB (--max_dataset_mb): pick a smaller dataset or raise the limit"
        )


def _unreachable(dataset_name: str, error: BaseException, purpose: str = "") -> CorpusError:
    return CorpusError(
        f"--dataset_name {dataset_name}: the dataset could not be reached{purpose} ({type(error).__name__}); "
        f"check the name and the network, or use --train_file with a local file"
    )


def _load_hub(dataset_name: str, config_name: str | None, text_column: str, max_megabytes: float | None):
    """The Hub dataset's train (and validation) split; with `max_megabytes`, refused over it before downloading."""
    if max_megabytes is not None:
        _check_hub_size(dataset_name, max_megabytes)
    source = f"--dataset_name {dataset_name}"
    try:
        splits = datasets.load_dataset(dataset_name, config_name)
    except (ConnectionError, DatasetNotFoundError, FileNotFoundError) as error:
        raise _unreachable(dataset_name, error) from error
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


def _hold_out_rows(documents: datasets.Dataset, percentage: float, seed: int):
    """Hold out whole rows chosen with `seed`; both parts keep the original order."""
    count = len(documents)
    if count < 2:
        raise CorpusError(
            "the corpus is a single row, so no validation split can be made: "
            "pass --validation_file, or give the text as a .txt file (its end is held out)"
        )
    validation_count = min(count - 1, max(1, round(count * percentage / 100)))
    held_out = np.random.default_rng(seed).permutation(count)[:validation_count]
    is_validation = np.zeros(count, dtype=bool)
    is_validation[held_out] = True
    return (
        documents.select(np.flatnonzero(~is_validation)),
        documents.select(np.flatnonzero(is_validation)),
    )


def _hold_out_text_end(documents: datasets.Dataset, percentage: float):
    """Hold out the last `percentage` % of the characters, in reading order: whole texts from the end, then the
    end of the text before, cut at the start of a paragraph (or line) near the mark. train + validation, joined,
    is the source exactly."""
    train = list(documents["text"])
    remaining = max(1, round(sum(map(len, train)) * percentage / 100))
    validation = []
    while remaining > 0 and train:
        text = train.pop()
        if len(text) <= remaining:
            validation.insert(0, text)
            remaining -= len(text)
            continue
        cut = _cut_point(text, len(text) - remaining)
        train.append(text[:cut])
        validation.insert(0, text[cut:])
        break
    return (
        _clean(datasets.Dataset.from_dict({"text": train}), "text", "the training part of the text"),
        datasets.Dataset.from_dict({"text": validation}).filter(_has_text, batched=True, input_columns="text"),
    )


def _cut_point(text: str, target: int) -> int:
    """The start of the paragraph nearest to `target`, else of the line, else `target` itself; the search stays
    within half the held-out length, so the split stays close to the asked percentage."""
    window = max(1, (len(text) - target) // 2)
    for separator in ("\n\n", "\n"):
        found = [
            text.rfind(separator, max(0, target - window), target),
            text.find(separator, target, min(len(text), target + window)),
        ]
        starts = [_skip_newlines(text, index + len(separator)) for index in found if index >= 0]
        starts = [start for start in starts if 0 < start < len(text)]
        if starts:
            return min(starts, key=lambda start: abs(start - target))
    return target


def _skip_newlines(text: str, position: int) -> int:
    while position < len(text) and text[position] == "\n":
        position += 1
    return position


def describe_source(
    train_file: str | None = None,
    validation_file: str | None = None,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    builtin_corpus_name: str | None = None,
) -> str:
    """A short name of the corpus for model cards and the app."""
    if dataset_name:
        config = f"/{dataset_config_name}" if dataset_config_name else ""
        return f"{dataset_name}{config} (Hugging Face Hub)"
    if train_file:
        validation = f", validation: {Path(validation_file).name}" if validation_file else ""
        return f"{Path(train_file).name}{validation}"
    return f"{builtin_corpus(builtin_corpus_name).name} (built-in)"


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
    overwrite_cache: bool = False,
    num_proc: int | None = None,
) -> datasets.DatasetDict:
    """Tokenize every split into rows of exactly `block_size` token ids (column "input_ids").

    Documents are joined with eos after each one, so the model learns where a text ends;
    each map batch of documents drops its tail shorter than a block (as transformers'
    run_clm example does). With `cache_dir`, datasets' map writes each split to an Arrow file
    named by the corpus, the tokenizer and block_size, and later runs load it instead of
    tokenizing again; `overwrite_cache` tokenizes again and rewrites the file (run_clm's flag).
    """
    if block_size < 1:
        raise CorpusError(f"--block_size must be at least 1, got {block_size}")
    if tokenizer.eos_token_id is None:
        raise CorpusError("the tokenizer has no eos_token to put between documents")
    cache_files = None
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        key = _cache_key(raw, tokenizer, block_size)
        cache_files = {split: str(Path(cache_dir) / f"{key}-{split}.arrow") for split in raw}
    grouped = raw.map(
        partial(_tokenize_and_chunk, tokenizer=tokenizer, block_size=block_size),
        batched=True,
        batch_size=_TEXT_BATCH_SIZE,
        input_columns="text",
        remove_columns=raw["train"].column_names,
        num_proc=num_proc,
        cache_file_names=cache_files,
        load_from_cache_file=not overwrite_cache,
        desc=f"Tokenizing into blocks of {block_size}",
    )
    try:
        return _checked(grouped, raw, tokenizer, block_size)
    except CorpusError:
        for name in (cache_files or {}).values():  # a refused corpus leaves no cache behind
            for path in Path(name).parent.glob(f"{Path(name).stem}*.arrow"):
                path.unlink(missing_ok=True)
        raise


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
    corpora, .txt files) and from the files for loaded ones, and the tokenizer's JSON holds its
    whole vocabulary, merges and pipeline.
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
