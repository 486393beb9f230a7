"""Corpora: the first step of the data's way through MiniGPT.

    text source -> DatasetDict(train, validation) -> tokenizer trained on train (minigpt.tokenizer_training)
      -> blocks of block_size token ids (minigpt.blocks)

Two built-in corpora need no download: "machado" (two public-domain novels by Machado de Assis, shipped in
`minigpt/data/machado/`, the default) and "python-reference" (the Python Language Reference that every
CPython ships in `pydoc_data.topics`). Local files (.txt, .jsonl/.json, .csv, .parquet) and Hub datasets are
read through `datasets`. Every problem with the user's data is raised as a `CorpusError` whose one-line
message names the file or flag to change.

Text is modelled byte-exact. A .txt file (and each built-in novel) is ONE text, kept exactly as it is (blank
lines, indentation, line breaks); eos goes only between documents (files, rows of a table or a Hub dataset,
topics of the Python reference). A text is read in pieces of at most 64 Ki characters, cut where the pieces'
tokens are the text's tokens (minigpt.text_pieces), into Arrow on disk: no step holds a whole text in memory,
and column "document_end" says which piece ends its text. Rows are held out for validation whole, chosen by the
seed; texts are held out at their end, the last N % of the corpus in reading order (as nanoGPT does), so the
validation text is a contiguous piece of the source. With streaming=True (--streaming), the train split is an
IterableDataset read as training goes, and the validation split is held out of the stream's first MB.
"""

from __future__ import annotations

import codecs
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import datasets
import huggingface_hub
import numpy as np
import pyarrow as pa
from datasets.exceptions import DatasetNotFoundError, DatasetsError

from minigpt.fingerprints import cache_key, file_fingerprint
from minigpt import text_pieces

DATA_DIR = Path(__file__).resolve().parent / "data"

# How each table-like file extension is read; .txt files are read as one text each, in pieces.
# Parquet is binary (its strings are UTF-8 by specification); the others are checked as UTF-8.
_TABLE_LOADERS = {
    ".jsonl": "json",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
}
_EXTENSIONS = (".txt", *_TABLE_LOADERS)

_PIECES_FORMAT = "minigpt-pieces-v1"  # bump when reading texts in pieces changes, to leave old copies behind
_PIECE_FEATURES = datasets.Features(
    {"text": datasets.Value("string"), "document_end": datasets.Value("bool"), "chars": datasets.Value("int64")}
)
_CUT_SEARCH_CHARS = 1 << 20  # how far from the mark the validation cut looks for a paragraph, at most


class CorpusError(ValueError):
    """One-line, actionable message about bad input data."""


# ---------------------------------------------------------------------------
# The built-in corpora
# ---------------------------------------------------------------------------


# The two novels and their md5 sums (also in data/machado/README.md): a damaged install fails loudly.
_MACHADO_FILES = {
    "quincas_borba.txt": "ccac62a93a5dfb5822e6a08301e27929",
    "dom_casmurro.txt": "bf289065e72100743ec1faec8b0e76da",
}


def _machado_files() -> list[Path]:
    paths = []
    for name, md5 in _MACHADO_FILES.items():
        path = DATA_DIR / "machado" / name
        if hashlib.md5(path.read_bytes()).hexdigest() != md5:
            raise CorpusError(f"the built-in corpus file {name} is damaged (md5 differs); reinstall minigpt")
        paths.append(path)
    return paths


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
    files: Callable[[], list[Path]] | None = None  # long texts, read in pieces and held out at their end
    rows: Callable[[], list[str]] | None = None  # documents held out whole

    def documents(self) -> list[str]:
        """The documents, in reading order (the two novels; the reference's topics)."""
        if self.files is not None:
            return [path.read_bytes().decode("utf-8") for path in self.files()]
        return self.rows()


BUILTIN_CORPORA = {
    "machado": BuiltinCorpus(
        "machado", "pt", "Machado de Assis: Quincas Borba (1891) and Dom Casmurro (1899)",
        ("Era uma vez", "Capitú"), files=_machado_files,
    ),
    "python-reference": BuiltinCorpus(
        "python-reference", "en", "the Python Language Reference (pydoc_data.topics)",
        ("The", "def"), rows=_python_reference_topics,
    ),
}
DEFAULT_BUILTIN_CORPUS = "machado"  # the book's readers come first


def builtin_corpus(name: str | None = None) -> BuiltinCorpus:
    name = name or DEFAULT_BUILTIN_CORPUS
    if name not in BUILTIN_CORPORA:
        raise CorpusError(f"--builtin_corpus {name!r} is unknown; choose one of: {', '.join(BUILTIN_CORPORA)}")
    return BUILTIN_CORPORA[name]


def write_excerpt(name: str, folder, train_chars: int, validation_chars: int) -> tuple[Path, Path]:
    """A small excerpt of the built-in corpus `name` as two .txt files in `folder` (made if missing): its first
    `train_chars` characters, to the end of that paragraph, to train on; the paragraphs that follow, about
    `validation_chars` characters, to validate on. Returns (train file, validation file)."""
    text = "\n\n".join(builtin_corpus(name).documents())
    train_end = text.find("\n\n", train_chars)
    validation_end = text.find("\n\n", train_end + 2 + validation_chars)
    if train_end < 0 or validation_end < 0:
        raise CorpusError(f"the built-in corpus {name!r} is shorter than the excerpt asked for")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / f"{name}-excerpt-train.txt", folder / f"{name}-excerpt-validation.txt"
    for path, part in zip(paths, (text[:train_end], text[train_end + 2:validation_end])):
        path.write_text(part + "\n", encoding="utf-8")
    return paths


# ---------------------------------------------------------------------------
# Loading text into DatasetDict(train, validation)
# ---------------------------------------------------------------------------


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
    streaming: bool = False,
    stream_head_mb: float = 100,
) -> datasets.DatasetDict:
    """Load the corpus as DatasetDict(train, validation), each with a str column "text" (and, for texts read in
    pieces, a bool column "document_end").

    Without a file or a Hub dataset, the built-in corpus `builtin_corpus_name` (default: machado) is used.
    Without a validation file or split, `validation_split_percentage` % is held out: whole rows chosen with
    `seed` for tables, Hub datasets and the Python reference; the last % of the text, in reading order, for
    .txt files and the novels. The split happens here, before any tokenizer sees the text, so the validation
    loss measures text the model never met. With `max_dataset_mb`, a Hub dataset whose files are larger is
    refused before anything is downloaded. `max_train_samples` keeps the first documents of train.

    streaming: train is an IterableDataset (a --dataset_name or --train_file read as training goes, nothing
    copied to disk); validation is held out of the stream's first `stream_head_mb` MB: its first
    `validation_split_percentage` % (whole rows, or pieces of a text, in reading order), or as much from the
    start of the source's validation split, kept in memory.

    The numbers are those of minigpt.arguments.DataArguments, which checks their bounds.
    """
    _check_sources(train_file, validation_file, dataset_name, builtin_corpus_name)
    if streaming:
        if not (train_file or dataset_name):
            raise CorpusError("--streaming reads a --dataset_name or a --train_file as a stream; the built-in "
                              "corpora are small: drop --streaming")
        return _load_stream(train_file, validation_file, dataset_name, dataset_config_name, text_column,
                            validation_split_percentage, max_train_samples, max_dataset_mb, stream_head_mb)
    train, validation = _load_sources(train_file, validation_file, dataset_name, dataset_config_name, text_column,
                                      builtin_corpus_name, max_dataset_mb)
    if validation is None:
        hold_out = _hold_out_text_end if _is_text(train) else partial(_hold_out_rows, seed=seed)
        train, validation = hold_out(train, validation_split_percentage)
    if max_train_samples is not None:
        train = _first_documents(train, max_train_samples)
    return datasets.DatasetDict(train=_without_chars(train), validation=_without_chars(validation))


def _check_sources(train_file, validation_file, dataset_name, builtin_name) -> None:
    if dataset_name and (train_file or validation_file):
        raise CorpusError("pass either --dataset_name or --train_file/--validation_file, not both")
    if validation_file and not train_file:
        raise CorpusError("--validation_file needs a --train_file to go with it")
    if builtin_name and (dataset_name or train_file):
        raise CorpusError("pass either --builtin_corpus or --train_file/--dataset_name, not both")


def _load_sources(train_file, validation_file, dataset_name, dataset_config_name, text_column, builtin_name,
                  max_dataset_mb):
    """(train, validation or None), each a cleaned Dataset: rows with "text", or pieces of texts."""
    if dataset_name:
        return _load_hub(dataset_name, dataset_config_name, text_column, max_dataset_mb)
    if train_file:
        train = _load_file(train_file, "--train_file", text_column)
        validation = _load_file(validation_file, "--validation_file", text_column) if validation_file else None
        return train, validation
    corpus = builtin_corpus(builtin_name)
    if corpus.files is not None:
        return _read_texts(corpus.files(), f"the built-in corpus {corpus.name}"), None
    return datasets.Dataset.from_dict({"text": corpus.rows()}), None


def _is_text(dataset) -> bool:
    return "document_end" in dataset.column_names


def _without_chars(dataset: datasets.Dataset) -> datasets.Dataset:
    return dataset.remove_columns("chars") if "chars" in dataset.column_names else dataset


def _check_file(path: str, flag: str) -> str:
    """The file's extension, once it is known to exist and to be one MiniGPT reads."""
    if not Path(path).is_file():
        raise CorpusError(f"{flag} {path}: file not found")
    extension = Path(path).suffix.lower()
    if extension not in _EXTENSIONS:
        raise CorpusError(
            f"{flag} {path}: unsupported extension {extension or '(none)'!r}; use one of {', '.join(_EXTENSIONS)}"
        )
    if extension != ".parquet":
        _check_utf8(path, flag)
    return extension


def _load_file(path: str, flag: str, text_column: str) -> datasets.Dataset:
    extension = _check_file(path, flag)
    if extension == ".txt":
        return _read_texts([Path(path)], f"{flag} {path}")
    builder = _TABLE_LOADERS[extension]
    try:
        dataset = datasets.load_dataset(builder, data_files=path, split="train")
    except (DatasetsError, pa.ArrowException) as error:
        raise _unreadable_file_error(path, flag, builder, error) from error
    return _clean(dataset, text_column, f"{flag} {path}")


def _pieces_of(paths):
    """Rows for Dataset.from_generator: the pieces of each file in turn, "document_end" on the last of each."""
    for path in paths:
        previous = None
        for piece in text_pieces.read_pieces(path):
            if previous is not None:
                yield {"text": previous, "document_end": False, "chars": len(previous)}
            previous = piece
        if previous is not None:
            yield {"text": previous, "document_end": True, "chars": len(previous)}


def _read_texts(paths: list[Path], source: str) -> datasets.Dataset:
    """Each file one text, byte for byte, in pieces, copied once into Arrow in the datasets cache under a
    fingerprint of the files' content (a later run on the same content loads the copy)."""
    for path in paths:
        if os.path.getsize(path) == 0:
            raise CorpusError(f"{source} is empty (no non-whitespace text); add text or pass another source")
    fingerprint = cache_key("texts", {"format": _PIECES_FORMAT, "piece_chars": text_pieces.PIECE_CHARS,
                                      "files": [file_fingerprint(path) for path in paths]})
    pieces = datasets.Dataset.from_generator(_pieces_of, features=_PIECE_FEATURES, fingerprint=fingerprint,
                                             gen_kwargs={"paths": [str(path) for path in paths]},
                                             writer_batch_size=64)
    texts = _Texts(pieces)
    if not all(texts.has_text(document) for document in range(texts.count)):
        raise CorpusError(f"{source} is empty (no non-whitespace text); add text or pass another source")
    return pieces


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


def _load_hub(dataset_name: str, config_name: str | None, text_column: str, max_megabytes: float | None,
              streaming: bool = False):
    """The Hub dataset's train (and validation) split; with `max_megabytes`, refused over it before downloading;
    with `streaming`, as IterableDatasets."""
    if max_megabytes is not None:
        _check_hub_size(dataset_name, max_megabytes)
    source = f"--dataset_name {dataset_name}"
    try:
        splits = datasets.load_dataset(dataset_name, config_name, streaming=streaming)
    except (ConnectionError, DatasetNotFoundError, FileNotFoundError) as error:
        raise _unreachable(dataset_name, error) from error
    if "train" not in splits:
        raise CorpusError(f"{source} has no 'train' split (it has: {', '.join(splits)})")
    clean = _clean_stream if streaming else _clean
    train = clean(splits["train"], text_column, source)
    validation = clean(splits["validation"], text_column, source) if "validation" in splits else None
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
    """Hold out whole rows chosen with `seed` (datasets' train_test_split); both parts keep the original order."""
    count = len(documents)
    if count < 2:
        raise CorpusError(
            "the corpus is a single row, so no validation split can be made: "
            "pass --validation_file, or give the text as a .txt file (its end is held out)"
        )
    validation_count = min(count - 1, max(1, round(count * percentage / 100)))
    rows = datasets.Dataset.from_dict({"row": np.arange(count)})  # the choice, made on the row numbers alone
    chosen = rows.train_test_split(test_size=validation_count, seed=seed, keep_in_memory=True)
    return (documents.select(np.sort(chosen["train"]["row"])), documents.select(np.sort(chosen["test"]["row"])))


class _Texts:
    """The documents of a dataset of pieces: which pieces each spans, its length, its text read in parts."""

    def __init__(self, pieces: datasets.Dataset):
        self.pieces = pieces
        columns = pieces.with_format("numpy").select_columns(["chars", "document_end"])[:]
        self.chars = columns["chars"].astype(np.int64)
        last = np.flatnonzero(columns["document_end"])
        self.first = np.concatenate([[0], last[:-1] + 1]).astype(np.int64)
        self.end = last + 1  # one past each document's last piece
        self.count = len(last)

    def length(self, document: int) -> int:
        return int(self.chars[self.first[document] : self.end[document]].sum())

    def offsets(self, document: int) -> np.ndarray:
        """Where each piece of the document starts, in characters, and where the document ends."""
        return np.concatenate([[0], np.cumsum(self.chars[self.first[document] : self.end[document]])])

    def texts(self, start: int, stop: int) -> list[str]:
        return self.pieces.select_columns(["text"])[int(start) : int(stop)]["text"]

    def has_text(self, document: int) -> bool:
        """Whether the document holds anything but whitespace (looked at piece by piece, the first one usually)."""
        return any(not text.isspace() for start in range(self.first[document], self.end[document])
                   for text in self.texts(start, start + 1))

    def reader(self, document: int) -> Callable[[int, int], str]:
        """read(a, b) -> the document's characters a to b, from the pieces that hold them."""
        offsets = self.offsets(document)

        def read(a: int, b: int) -> str:
            if a >= b:
                return ""
            first = np.searchsorted(offsets, a, side="right") - 1
            stop = np.searchsorted(offsets, b, side="left")
            joined = "".join(self.texts(self.first[document] + first, self.first[document] + stop))
            return joined[a - offsets[first] : b - offsets[first]]

        return read


def _hold_out_text_end(pieces: datasets.Dataset, percentage: float):
    """Hold out the last `percentage` % of the characters, in reading order: whole texts from the end, then the
    end of the text before, cut at the start of a paragraph (or line) near the mark. train + validation, joined,
    is the source exactly; the cut splits one piece in two, and the train side's last piece ends its document."""
    texts = _Texts(pieces)
    lengths = [texts.length(document) for document in range(texts.count)]
    remaining = max(1, round(sum(lengths) * percentage / 100))
    document = texts.count
    while remaining > 0 and document > 0:
        document -= 1
        if lengths[document] <= remaining:
            remaining -= lengths[document]
            continue
        cut = _cut_point(texts.reader(document), lengths[document], lengths[document] - remaining)
        return _split_document(pieces, texts, document, cut)
    if document == 0:
        raise CorpusError("the training part of the text is empty (no non-whitespace text); add text or pass "
                          "another source")
    split = int(texts.first[document])
    return pieces.select(range(split)), pieces.select(range(split, len(pieces)))


def _split_document(pieces: datasets.Dataset, texts: _Texts, document: int, cut: int):
    """(train, validation): the pieces before `cut` of `document` and the documents before it; the rest."""
    offsets = texts.offsets(document)
    index = int(np.searchsorted(offsets, cut, side="left")) - 1  # the piece holding the cut's last train character
    at = int(texts.first[document]) + index
    (text,), (ends,) = (pieces[at : at + 1][column] for column in ("text", "document_end"))
    head, tail = text[: cut - offsets[index]], text[cut - offsets[index] :]
    head_piece = datasets.Dataset.from_dict({"text": [head], "document_end": [True], "chars": [len(head)]},
                                            features=_PIECE_FEATURES)
    tail_piece = datasets.Dataset.from_dict({"text": [tail], "document_end": [ends], "chars": [len(tail)]},
                                            features=_PIECE_FEATURES)
    train = datasets.concatenate_datasets([pieces.select(range(at)), head_piece])
    after = [pieces.select(range(at + 1, len(pieces)))] if at + 1 < len(pieces) else []
    validation = datasets.concatenate_datasets(([tail_piece] if tail else []) + after)
    train_texts = _Texts(train)
    if not train_texts.has_text(train_texts.count - 1):  # the start of the text is all whitespace: dropped
        if train_texts.count == 1:
            raise CorpusError("the training part of the text is empty (no non-whitespace text); add text or pass "
                              "another source")
        train = train.select(range(int(train_texts.first[-1])))
    validation_texts = _Texts(validation)
    if not validation_texts.has_text(0):  # the end of the cut text is all whitespace: no document to evaluate
        validation = validation.select(range(int(validation_texts.end[0]), len(validation)) or [])
    return train, validation


def _cut_point(read: Callable[[int, int], str], length: int, target: int) -> int:
    """The start of the paragraph nearest to `target` in a text of `length` characters, else of the line, else
    `target` itself. The search stays within half the held-out length, so the split stays close to the asked
    percentage, and within _CUT_SEARCH_CHARS, so that it reads a bounded part of the text."""
    window = min(max(1, (length - target) // 2), _CUT_SEARCH_CHARS)
    low, high = max(0, target - window), min(length, target + window)
    text = read(low, high)
    for separator in ("\n\n", "\n"):
        found = [text.rfind(separator, 0, target - low), text.find(separator, target - low, high - low)]
        starts = [_skip_newlines(read, length, low + index + len(separator)) for index in found if index >= 0]
        starts = [start for start in starts if 0 < start < length]
        if starts:
            return min(starts, key=lambda start: abs(start - target))
    return target


def _skip_newlines(read: Callable[[int, int], str], length: int, position: int) -> int:
    while position < length:
        part = read(position, min(length, position + 4096))
        newlines = len(part) - len(part.lstrip("\n"))
        position += newlines
        if newlines < len(part):
            break
    return position


def _first_documents(dataset: datasets.Dataset, count: int) -> datasets.Dataset:
    """The first `count` documents: rows, or the pieces of the first `count` texts."""
    if not _is_text(dataset):
        return dataset.select(range(min(count, len(dataset))))
    texts = _Texts(dataset)
    return dataset.select(range(int(texts.end[min(count, texts.count) - 1])))


# ---------------------------------------------------------------------------
# Streaming: a train split read as training goes
# ---------------------------------------------------------------------------


def _load_stream(train_file, validation_file, dataset_name, config_name, text_column, percentage,
                 max_train_samples, max_dataset_mb, head_mb) -> datasets.DatasetDict:
    if dataset_name:
        train, validation = _load_hub(dataset_name, config_name, text_column, max_dataset_mb, streaming=True)
    else:
        train = _stream_file(train_file, "--train_file", text_column)
        validation = _stream_file(validation_file, "--validation_file", text_column) if validation_file else None
    budget = head_mb * 1e6 * percentage / 100
    rows, more = _head(validation if validation is not None else train, budget)
    if validation is None:
        if not more:
            raise CorpusError(f"the stream ends within the {budget / 1e6:g} MB held out for validation: drop "
                              f"--streaming, or lower --validation_split_percentage or --tokenizer_sample_mb")
        train = train.skip(len(rows))
    if rows and "document_end" in rows[-1]:
        rows[-1]["document_end"] = True  # the held-out text ends where validation ends
    if max_train_samples is not None:
        train = train.take(max_train_samples)
    return datasets.DatasetDict(train=train, validation=datasets.Dataset.from_list(rows))


def _head(stream: datasets.IterableDataset, budget: float) -> tuple[list[dict], bool]:
    """The first rows of `stream`, until their text reaches `budget` bytes (a piece of a text is a row: the head
    of a .txt file is whole pieces of it); and whether the stream goes on after them."""
    rows, seen = [], 0
    for row in stream:
        if seen >= budget:
            return rows, True
        rows.append(row)
        seen += len(row["text"].encode("utf-8"))
    return rows, False


def _stream_file(path: str, flag: str, text_column: str) -> datasets.IterableDataset:
    extension = _check_file(path, flag)
    if extension == ".txt":
        stream = datasets.IterableDataset.from_generator(_pieces_of, features=_PIECE_FEATURES,
                                                         gen_kwargs={"paths": [path]})
        return stream.remove_columns("chars")
    builder = _TABLE_LOADERS[extension]
    return _clean_stream(datasets.load_dataset(builder, data_files=path, split="train", streaming=True),
                         text_column, f"{flag} {path}")


def _clean_stream(stream: datasets.IterableDataset, text_column: str, source: str) -> datasets.IterableDataset:
    """_clean for a stream, whose columns are known only from its first row."""
    try:
        first = next(iter(stream), None)
    except (DatasetsError, pa.ArrowException, ValueError) as error:
        raise CorpusError(f"{source}: could not read it: {str(error).splitlines()[0]}") from error
    if first is None:
        raise CorpusError(f"{source} is empty; add text or pass another source")
    if text_column not in first:
        raise CorpusError(f"{source} has no column {text_column!r} (columns: {', '.join(first)}); "
                          f"pick one with --text_column")
    if not isinstance(first[text_column], str):
        raise CorpusError(f"{source}: column {text_column!r} holds {type(first[text_column]).__name__}, not text; "
                          f"pick another with --text_column")
    stream = stream.select_columns([text_column])
    if text_column != "text":
        stream = stream.rename_column(text_column, "text")
    return stream.filter(_has_text, batched=True, input_columns="text")


def describe_source(
    train_file: str | None = None,
    validation_file: str | None = None,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    builtin_corpus_name: str | None = None,
    fingerprints: dict | None = None,
) -> str:
    """A short name of the corpus for model cards and the app; with `fingerprints` ({path: file_fingerprint}), each
    file's size and content hash after its name."""
    if dataset_name:
        config = f"/{dataset_config_name}" if dataset_config_name else ""
        return f"{dataset_name}{config} (Hugging Face Hub)"
    if train_file:
        validation = f", validation: {_file_name(validation_file, fingerprints)}" if validation_file else ""
        return f"{_file_name(train_file, fingerprints)}{validation}"
    return f"{builtin_corpus(builtin_corpus_name).name} (built-in)"


def _file_name(path: str, fingerprints: dict | None) -> str:
    fingerprint = (fingerprints or {}).get(os.path.realpath(path))
    if fingerprint is None:
        return Path(path).name
    return f"{Path(path).name} ({fingerprint['bytes']:,} bytes, blake2b {fingerprint['blake2b'][:16]})"


