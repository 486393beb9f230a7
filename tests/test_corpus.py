"""Tests for minigpt.corpus: real datasets, real tokenizers, no network."""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import datasets
import pytest
from transformers import AutoTokenizer

from minigpt import blocks, corpus
from minigpt.arguments import DataArguments
from minigpt.corpus import CorpusError
from minigpt.errors import SettingError
from minigpt.tokenizer_training import train_tokenizer

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHAKESPEARE = PROJECT_ROOT / "minigpt" / "data" / "tinyshakespeare.txt"
PYTHON_REFERENCE = "python-reference"


@pytest.fixture(autouse=True, scope="module")
def private_datasets_cache(tmp_path_factory):
    # load_dataset caches parsed files; keep that out of the user's ~/.cache.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf_datasets")))
        yield


@pytest.fixture(scope="module")
def builtin():
    return corpus.load_text_datasets(builtin_corpus_name=PYTHON_REFERENCE)


@pytest.fixture(scope="module")
def bpe(builtin):
    return train_tokenizer(builtin["train"], kind="bpe", vocab_size=1024)


def documents(split: datasets.Dataset) -> list[str]:
    """The documents of a split: its rows, or its pieces joined up to each "document_end"."""
    if "document_end" not in split.column_names:
        return list(split["text"])
    joined, current = [], ""
    for text, end in zip(split["text"], split["document_end"]):
        current += text
        if end:
            joined.append(current)
            current = ""
    assert current == "", "the last piece must end its document"
    return joined


def dataset_dict(train: list[str], validation: list[str]) -> datasets.DatasetDict:
    return datasets.DatasetDict(
        train=datasets.Dataset.from_dict({"text": train}),
        validation=datasets.Dataset.from_dict({"text": validation}),
    )


def write_table(path: Path, rows: dict[str, list]) -> Path:
    table = datasets.Dataset.from_dict(rows)
    {".jsonl": table.to_json, ".csv": table.to_csv, ".parquet": table.to_parquet}[path.suffix](str(path))
    return path


# --- loading ------------------------------------------------------------------


def test_python_reference_is_deterministic():
    topics = corpus.builtin_corpus(PYTHON_REFERENCE).documents()
    assert sum(map(len, topics)) > 300_000
    assert any('The "pass" statement' in topic for topic in topics)
    assert topics == corpus.builtin_corpus(PYTHON_REFERENCE).documents()
    assert corpus.builtin_corpus(PYTHON_REFERENCE).language == "en"


def test_builtin_corpus_splits_whole_topics_disjointly(builtin):
    assert set(builtin) == {"train", "validation"}
    for split in builtin.values():
        assert split.column_names == ["text"]
        assert len(split) > 0
    train, validation = set(builtin["train"]["text"]), set(builtin["validation"]["text"])
    assert not train & validation
    # 79 topics, of which "if" and "else" share one text: 78 distinct documents, 10 % held out.
    assert len(train) + len(validation) == 78 == len(builtin["train"]) + len(builtin["validation"])
    assert len(validation) == 8


def test_split_is_deterministic_in_seed_and_follows_percentage(builtin):
    again = corpus.load_text_datasets(seed=42, builtin_corpus_name=PYTHON_REFERENCE)
    assert list(again["validation"]["text"]) == list(builtin["validation"]["text"])
    other_seed = corpus.load_text_datasets(seed=7, builtin_corpus_name=PYTHON_REFERENCE)
    assert list(other_seed["validation"]["text"]) != list(builtin["validation"]["text"])
    half = corpus.load_text_datasets(validation_split_percentage=50, builtin_corpus_name=PYTHON_REFERENCE)
    assert len(half["validation"]) == 39


def test_small_percentage_still_holds_out_one_row(tmp_path):
    path = write_table(tmp_path / "two.jsonl", {"text": ["first row", "second row"]})
    raw = corpus.load_text_datasets(train_file=str(path), validation_split_percentage=1)
    assert len(raw["train"]) == 1 and len(raw["validation"]) == 1


def test_max_train_samples_limits_train_only(builtin):
    raw = corpus.load_text_datasets(max_train_samples=5, builtin_corpus_name=PYTHON_REFERENCE)
    assert len(raw["train"]) == 5
    assert len(raw["validation"]) == len(builtin["validation"])


def test_tiny_shakespeare_is_one_text_whose_last_tenth_is_held_out_at_a_paragraph():
    text = SHAKESPEARE.read_bytes().decode("utf-8")
    raw = corpus.load_text_datasets(train_file=str(SHAKESPEARE), seed=1)
    (train,), (validation,) = documents(raw["train"]), documents(raw["validation"])
    assert train + validation == text  # byte for byte, blank lines included
    assert train.startswith("First Citizen:") and train.endswith("\n\n") and validation[0] != "\n"
    assert abs(len(validation) / len(text) - 0.10) < 0.001
    assert documents(corpus.load_text_datasets(train_file=str(SHAKESPEARE), seed=2)["validation"]) == [validation]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_structured_files_with_custom_text_column(tmp_path, suffix):
    rows = {"body": [f"document number {i}" for i in range(20)], "id": list(range(20))}
    path = write_table(tmp_path / f"train{suffix}", rows)
    raw = corpus.load_text_datasets(train_file=str(path), text_column="body", validation_split_percentage=20)
    assert raw["train"].column_names == ["text"] == raw["validation"].column_names
    assert len(raw["validation"]) == 4
    assert sorted([*raw["train"]["text"], *raw["validation"]["text"]]) == sorted(rows["body"])


def test_validation_file_is_used_instead_of_a_split(tmp_path):
    train = write_table(tmp_path / "train.jsonl", {"body": ["a b c", "d e f"]})
    validation = write_table(tmp_path / "valid.csv", {"body": ["held out", "   ", None]})
    raw = corpus.load_text_datasets(train_file=str(train), validation_file=str(validation), text_column="body")
    assert list(raw["train"]["text"]) == ["a b c", "d e f"]
    assert list(raw["validation"]["text"]) == ["held out"]  # blank and missing cells are dropped


def test_describe_source():
    assert corpus.describe_source() == "machado (built-in)"
    assert corpus.describe_source(builtin_corpus_name=PYTHON_REFERENCE) == "python-reference (built-in)"
    assert corpus.describe_source("data/train.txt", "data/valid.txt") == "train.txt, validation: valid.txt"
    assert corpus.describe_source(dataset_name="wikitext", dataset_config_name="wikitext-2-raw-v1") == (
        "wikitext/wikitext-2-raw-v1 (Hugging Face Hub)"
    )


# --- loading errors -----------------------------------------------------------


BAD_DATA_SETTINGS = [("validation_split_percentage", value, r"in \(0, 100\)") for value in (0, 100, -5, 150)] + [
    ("block_size", 1, "at least 2"), ("max_dataset_mb", 0, "a positive number"),
    ("max_dataset_mb", -5, "a positive number"), ("tokenizer_sample_mb", 0, "a positive number"),
    ("max_train_samples", 0, "at least 1")]


@pytest.mark.parametrize("setting, value, rule", BAD_DATA_SETTINGS)
def test_bad_data_settings_are_refused_when_the_arguments_are_made(setting, value, rule):
    with pytest.raises(SettingError, match=f"^--{setting} must be {rule}, got {value}$"):
        DataArguments(**{setting: value})


def test_missing_file(tmp_path):
    with pytest.raises(CorpusError, match=r"--train_file .*nope\.txt: file not found"):
        corpus.load_text_datasets(train_file=str(tmp_path / "nope.txt"))


def test_unsupported_extension(tmp_path):
    path = tmp_path / "book.docx"
    path.write_bytes(b"x")
    with pytest.raises(CorpusError, match=r"book\.docx: unsupported extension '\.docx'; use one of \.txt"):
        corpus.load_text_datasets(train_file=str(path))


def test_empty_corpus(tmp_path):
    path = tmp_path / "blank.txt"
    path.write_text("  \n\n\t\n\n \n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"blank\.txt is empty \(no non-whitespace text\)"):
        corpus.load_text_datasets(train_file=str(path))


def test_a_single_row_cannot_be_split(tmp_path):
    path = write_table(tmp_path / "one.jsonl", {"text": ["one line\nanother line\n"]})
    with pytest.raises(CorpusError, match="single row.*--validation_file, or give the text as a .txt file"):
        corpus.load_text_datasets(train_file=str(path))


def test_missing_text_column_names_the_columns(tmp_path):
    path = write_table(tmp_path / "data.jsonl", {"body": ["a", "b"], "id": [1, 2]})
    with pytest.raises(CorpusError) as error:
        corpus.load_text_datasets(train_file=str(path))
    message = str(error.value)
    assert "no column 'text'" in message and "body, id" in message and "--text_column" in message


def test_non_text_column_is_refused(tmp_path):
    path = write_table(tmp_path / "data.parquet", {"body": ["a", "b"], "id": [1, 2]})
    with pytest.raises(CorpusError, match="column 'id' holds .*int64.*not text"):
        corpus.load_text_datasets(train_file=str(path), text_column="id")


@pytest.mark.parametrize(
    ("name", "content", "offset"),
    [
        ("latin1.txt", b"caf\xe9 au lait\n\nmore text\n", 3),
        ("latin1.jsonl", b'{"text": "caf\xe9"}\n', 13),
        # a valid two-byte character cut by the 1 MiB read boundary, then a bad byte
        ("boundary.csv", b"text\n" + b"a" * (2**20 - 6) + "é".encode() + b"\xff\n", 2**20 + 1),
    ],
)
def test_non_utf8_bytes(tmp_path, name, content, offset):
    path = tmp_path / name
    path.write_bytes(content)
    expected = rf"{name}: the file is not UTF-8 text \(bad byte at offset {offset}\); re-save it as UTF-8"
    with pytest.raises(CorpusError, match=expected):
        corpus.load_text_datasets(train_file=str(path))


def test_file_cut_inside_a_character(tmp_path):
    path = tmp_path / "cut.txt"
    path.write_bytes("abc\n\ndé".encode()[:-1])
    with pytest.raises(CorpusError, match=r"cut\.txt: the file ends inside a UTF-8 character; re-save it as UTF-8"):
        corpus.load_text_datasets(train_file=str(path))


def test_malformed_file_gives_a_one_line_error(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"text": "a"\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"broken\.jsonl: could not read it as json") as error:
        corpus.load_text_datasets(train_file=str(path))
    assert "\n" not in str(error.value)


def test_conflicting_sources():
    with pytest.raises(CorpusError, match="either --dataset_name or --train_file"):
        corpus.load_text_datasets(train_file="a.txt", dataset_name="wikitext")
    with pytest.raises(CorpusError, match="--validation_file needs a --train_file"):
        corpus.load_text_datasets(validation_file="a.txt")
    with pytest.raises(CorpusError, match="either --builtin_corpus or --train_file/--dataset_name"):
        corpus.load_text_datasets(train_file="a.txt", builtin_corpus_name="machado")
    with pytest.raises(CorpusError, match="--builtin_corpus 'klingon' is unknown; choose one of: machado, python"):
        corpus.load_text_datasets(builtin_corpus_name="klingon")


def test_hub_dataset_offline_is_a_corpus_error(tmp_path):
    # Offline mode is read when datasets is imported, hence a fresh interpreter.
    script = (
        "from minigpt import corpus\n"
        "for limit in (None, 50):\n"
        "    try:\n"
        "        corpus.load_text_datasets(dataset_name='minigpt-tests/not-a-real-dataset', max_dataset_mb=limit)\n"
        "    except corpus.CorpusError as error:\n"
        "        print('CorpusError:', error)\n"
    )
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2, result.stdout
    assert lines[0].startswith("CorpusError: --dataset_name minigpt-tests/not-a-real-dataset: the dataset could not "
                               "be reached (")
    assert lines[1].startswith("CorpusError: --dataset_name minigpt-tests/not-a-real-dataset: the dataset could not "
                               "be reached to check its size (OfflineModeIsEnabled)")
    assert "--train_file" in result.stdout
    assert "Traceback" not in result.stderr


# --- tokenizers ---------------------------------------------------------------

SAMPLE = 'def f(x):\n    return x ** 2  # "squares" , twice\n\nThe  "pass" statement.'


@pytest.mark.parametrize("kind", ["bpe", "char"])
def test_tokenizer_round_trips_and_survives_save_and_load(builtin, tmp_path, kind):
    tokenizer = train_tokenizer(builtin["train"], kind=kind, vocab_size=1024)
    ids = tokenizer(SAMPLE)["input_ids"]
    assert tokenizer.decode(ids) == SAMPLE
    assert tokenizer.bos_token == tokenizer.eos_token == "<|endoftext|>"
    assert tokenizer.pad_token == "<|pad|>" and tokenizer.pad_token_id != tokenizer.eos_token_id
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded(SAMPLE)["input_ids"] == ids
    assert reloaded.decode(ids) == SAMPLE
    assert (reloaded.eos_token, reloaded.pad_token) == ("<|endoftext|>", "<|pad|>")


def test_bpe_respects_vocab_size_and_encodes_any_text(bpe):
    assert len(bpe) == 1024
    text = "naïve café 漢字 🙂"  # characters the Python reference may lack: bytes cover them
    assert bpe.decode(bpe(text)["input_ids"]) == text
    assert bpe.unk_token is None


def test_char_tokenizer_learns_train_split_only():
    raw = dataset_dict(["abc abc", "cab"], ["abc§"])
    tokenizer = train_tokenizer(raw["train"], kind="char")
    vocabulary = tokenizer.get_vocab()
    assert {"a", "b", "c", " "} <= set(vocabulary) and "§" not in vocabulary
    assert len(tokenizer) == 3 + 4  # eos, pad, unk + the four characters
    ids = tokenizer("c§")["input_ids"]
    assert ids == [vocabulary["c"], tokenizer.unk_token_id]
    assert tokenizer.unk_token == "<|unk|>"


def test_bad_tokenizer_arguments(builtin):
    with pytest.raises(CorpusError, match="unknown tokenizer kind 'wordpiece'"):
        train_tokenizer(builtin["train"], kind="wordpiece")
    with pytest.raises(CorpusError, match="--vocab_size 200 is too small.*at least 258"):
        train_tokenizer(builtin["train"], kind="bpe", vocab_size=200)


# --- tokenize and group -------------------------------------------------------


def test_blocks_are_full_and_documents_end_with_eos():
    raw = dataset_dict(["hello world", "abc", "the end of it"], ["hello abc", "world"])
    tokenizer = train_tokenizer(raw["train"], kind="char")
    grouped = blocks.tokenize_and_group(raw, tokenizer, block_size=4)
    assert grouped["train"].column_names == ["input_ids"]
    for split in grouped.values():
        assert all(len(ids) == 4 for ids in split["input_ids"])
    stream = [token for ids in grouped["train"]["input_ids"] for token in ids]
    eos = tokenizer.eos_token
    expected = tokenizer(f"hello world{eos}abc{eos}the end of it{eos}")["input_ids"]
    assert stream == expected[: len(expected) // 4 * 4]
    assert len(grouped["train"]) == 29 // 4


def test_builtin_corpus_groups_into_full_blocks(builtin, bpe):
    grouped = blocks.tokenize_and_group(builtin, bpe, block_size=128)
    assert len(grouped["train"]) > 500 and len(grouped["validation"]) > 10
    assert set(map(len, grouped["validation"]["input_ids"])) == {128}
    eos_count = sum(ids.count(bpe.eos_token_id) for ids in grouped["train"]["input_ids"])
    assert eos_count in (len(builtin["train"]), len(builtin["train"]) - 1)  # the last may fall in the dropped tail


def must_not_tokenize(*args, **kwargs):
    raise AssertionError("tokenized again instead of using the cache")


def cache_names(raw, tokenizer, block_size):
    return {split: f"{blocks._cache_key(texts, tokenizer, block_size)}-{split}.arrow" for split, texts in raw.items()}


def test_second_call_is_served_from_datasets_cache_files(builtin, bpe, tmp_path, monkeypatch):
    first = blocks.tokenize_and_group(builtin, bpe, block_size=64, cache_dir=str(tmp_path))
    names = cache_names(builtin, bpe, 64)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names.values())  # no scratch files left
    assert first["train"].cache_files[0]["filename"] == str(tmp_path / names["train"])

    monkeypatch.setattr(blocks, "_token_rows", must_not_tokenize)
    same_corpus_again = corpus.load_text_datasets(builtin_corpus_name=PYTHON_REFERENCE)
    second = blocks.tokenize_and_group(same_corpus_again, bpe, block_size=64, cache_dir=str(tmp_path))
    assert list(second["train"]["input_ids"]) == list(first["train"]["input_ids"])
    assert list(second["validation"]["input_ids"]) == list(first["validation"]["input_ids"])
    with pytest.raises(AssertionError, match="tokenized again"):  # a new block size is a new key
        blocks.tokenize_and_group(builtin, bpe, block_size=32, cache_dir=str(tmp_path))


def test_overwrite_cache_tokenizes_again_and_rewrites_the_files(builtin, bpe, tmp_path, monkeypatch):
    blocks.tokenize_and_group(builtin, bpe, block_size=64, cache_dir=str(tmp_path))
    train_file = tmp_path / cache_names(builtin, bpe, 64)["train"]
    train_file.write_bytes(b"stale")  # a cache file that would not even load
    rewritten = blocks.tokenize_and_group(builtin, bpe, block_size=64, cache_dir=str(tmp_path), overwrite_cache=True)
    assert len(rewritten["train"]) > 500 and train_file.stat().st_size > 1000
    monkeypatch.setattr(blocks, "_token_rows", must_not_tokenize)
    with pytest.raises(AssertionError, match="tokenized again"):
        blocks.tokenize_and_group(builtin, bpe, block_size=64, cache_dir=str(tmp_path), overwrite_cache=True)


def test_cache_key_depends_on_corpus_tokenizer_and_block_size(builtin, bpe):
    char = train_tokenizer(builtin["train"], kind="char")
    other_corpus = corpus.load_text_datasets(seed=1, builtin_corpus_name=PYTHON_REFERENCE)
    train = builtin["train"]
    keys = {
        blocks._cache_key(train, bpe, 64),
        blocks._cache_key(train, bpe, 65),
        blocks._cache_key(train, char, 64),
        blocks._cache_key(other_corpus["train"], bpe, 64),
        blocks._cache_key(builtin["validation"], bpe, 64),
    }
    assert len(keys) == 5


def test_corpus_shorter_than_one_block():
    raw = dataset_dict(["tiny"], ["tiny"])
    tokenizer = train_tokenizer(raw["train"], kind="char")
    with pytest.raises(CorpusError, match=r"training text has only 5 tokens, less than one block of 8: lower --block_size"):
        blocks.tokenize_and_group(raw, tokenizer, block_size=8)


def test_validation_without_a_full_block(tmp_path):
    raw = dataset_dict(["a long enough training text"], ["short"])
    tokenizer = train_tokenizer(raw["train"], kind="char")
    with pytest.raises(CorpusError, match=r"validation split has only 6 tokens.*--validation_split_percentage"):
        blocks.tokenize_and_group(raw, tokenizer, block_size=8, cache_dir=str(tmp_path))
    assert list(tmp_path.iterdir()) == []  # a refused corpus is not cached


# --- the built-in Portuguese corpus and byte-exact text -----------------------

MACHADO_DIR = PROJECT_ROOT / "minigpt" / "data" / "machado"


def test_machado_ships_in_the_package_and_matches_its_readme_checksums():
    readme = (MACHADO_DIR / "README.md").read_text(encoding="utf-8")
    for name, md5 in corpus._MACHADO_FILES.items():
        assert hashlib.md5((MACHADO_DIR / name).read_bytes()).hexdigest() == md5
        assert f"| {name} |" in readme and md5 in readme
    novels = corpus.builtin_corpus("machado").documents()
    assert [novel.splitlines()[0] for novel in novels] == ["Title: Quincas Borba", "Title: Dom Casmurro"]
    assert novels == [(MACHADO_DIR / name).read_bytes().decode("utf-8") for name in corpus._MACHADO_FILES]


def test_machado_is_the_default_and_its_validation_is_the_end_of_dom_casmurro():
    assert corpus.DEFAULT_BUILTIN_CORPUS == "machado" and corpus.builtin_corpus().language == "pt"
    quincas, dom = corpus.builtin_corpus("machado").documents()
    raw = corpus.load_text_datasets()
    assert documents(raw["train"])[0] == quincas
    (validation,) = documents(raw["validation"])
    assert documents(raw["train"])[1] + validation == dom and dom.endswith(validation)
    assert abs(len(validation) / (len(quincas) + len(dom)) - 0.10) < 0.002
    # More than one novel's worth: the end of Quincas Borba and all of Dom Casmurro, in reading order.
    half = corpus.load_text_datasets(validation_split_percentage=60)
    assert documents(half["validation"])[1] == dom and quincas.endswith(documents(half["validation"])[0])
    assert documents(half["train"])[0] + documents(half["validation"])[0] == quincas
    assert documents(corpus.load_text_datasets(max_train_samples=1)["train"]) == [quincas]  # the first document


def test_a_damaged_machado_file_is_refused(tmp_path, monkeypatch):
    shutil.copytree(MACHADO_DIR, tmp_path / "machado")
    novel = tmp_path / "machado" / "dom_casmurro.txt"
    novel.write_bytes(novel.read_bytes().replace("Capitú".encode(), "Capitu".encode(), 1))
    monkeypatch.setattr(corpus, "DATA_DIR", tmp_path)
    with pytest.raises(CorpusError, match="dom_casmurro.txt is damaged.*reinstall minigpt"):
        corpus.load_text_datasets()


MESSY_TEXT = (
    "Title: A test\r\n\r\nCAPITULO I\n\n\n  Indented line, trailing spaces   \n\tand a tab.\n\n"
    "Capitú olhou: «ação», coração, á janella... 🙂\n\n\n\n"
    + "".join(f"Paragrapho {i}: uma linha\nque continua.\n\n" for i in range(60))
    + "Fim, sem newline final"
)


@pytest.mark.parametrize("kind", ["bpe", "char"])
def test_a_txt_file_round_trips_byte_for_byte_through_the_tokenized_stream(tmp_path, kind):
    path = tmp_path / "messy.txt"
    path.write_bytes(MESSY_TEXT.encode("utf-8"))
    whole = corpus.load_text_datasets(train_file=str(path), validation_file=str(path))
    assert whole["train"]["text"] == [MESSY_TEXT]  # one document, \r\n and blank lines as in the file
    tokenizer = train_tokenizer(whole["train"], kind=kind, vocab_size=300)
    grouped = blocks.tokenize_and_group(whole, tokenizer, block_size=1)  # blocks of one token: no tail dropped
    stream = [ids[0] for ids in grouped["train"]["input_ids"]]
    assert stream.count(tokenizer.eos_token_id) == 1 and stream[-1] == tokenizer.eos_token_id  # eos ends the file
    assert tokenizer.decode(stream, skip_special_tokens=True).encode("utf-8") == path.read_bytes()
    assert "\n\n" in tokenizer.decode(stream[:40]) or "\r\n\r\n" in tokenizer.decode(stream[:40])

    grouped = blocks.tokenize_and_group(whole, tokenizer, block_size=16)
    blocked = [token for ids in grouped["train"]["input_ids"] for token in ids]
    assert blocked == stream[: len(blocked)] and len(stream) - len(blocked) < 16


def test_the_validation_of_a_text_is_its_contiguous_end(tmp_path):
    path = tmp_path / "messy.txt"
    path.write_bytes(MESSY_TEXT.encode("utf-8"))
    for percentage in (5, 10, 30):
        raw = corpus.load_text_datasets(train_file=str(path), validation_split_percentage=percentage)
        (train,), (validation,) = documents(raw["train"]), documents(raw["validation"])
        assert train + validation == MESSY_TEXT
        assert validation.startswith("Paragrapho ") and train.endswith("\n\n")  # cut at a paragraph's start
        assert abs(len(validation) / len(MESSY_TEXT) - percentage / 100) < percentage / 200


def test_a_text_without_line_breaks_is_cut_at_the_percentage(tmp_path):
    path = tmp_path / "one_line.txt"
    path.write_text("x" * 1000, encoding="utf-8")
    raw = corpus.load_text_datasets(train_file=str(path), validation_split_percentage=10)
    assert [len(raw["train"]["text"][0]), len(raw["validation"]["text"][0])] == [900, 100]


def test_bpe_trained_on_machado_keeps_newlines_and_accents():
    raw = corpus.load_text_datasets()
    tokenizer = train_tokenizer(raw["train"], kind="bpe", vocab_size=1024)
    text = "Capitú, a mãe, o coração; á janella.\n\nEra uma vez"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert tokenizer.eos_token_id not in ids
    assert "ĊĊ" in tokenizer.get_vocab()  # a paragraph break is a token of its own, learned from the novels


@pytest.fixture
def hub_sizes(monkeypatch):
    """The Hub's answer about a dataset's files (there is no network here), and a load_dataset that records what
    it was asked to download."""
    import huggingface_hub

    downloads = []

    def dataset_info(self, repo_id, **kwargs):
        assert kwargs.get("files_metadata") is True  # without it the Hub sends no sizes
        return SimpleNamespace(siblings=[SimpleNamespace(rfilename="README.md", size=2_000),
                                         SimpleNamespace(rfilename="data/train.parquet", size=30_000_000),
                                         SimpleNamespace(rfilename="data/test.parquet", size=None)])

    def load_dataset(name, config=None, **kwargs):
        downloads.append(name)
        return datasets.DatasetDict(train=datasets.Dataset.from_dict({"text": [f"row {i}" for i in range(20)]}))

    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", dataset_info)
    monkeypatch.setattr(corpus.datasets, "load_dataset", load_dataset)
    return downloads


def test_a_hub_dataset_over_the_size_limit_is_refused_before_downloading(hub_sizes):
    with pytest.raises(CorpusError, match=r"--dataset_name someone/big is 30 MB on the Hub, over the limit of 25 MB "
                                          r"\(--max_dataset_mb\): pick a smaller dataset"):
        corpus.load_text_datasets(dataset_name="someone/big", max_dataset_mb=25)
    assert hub_sizes == []
    raw = corpus.load_text_datasets(dataset_name="someone/big", max_dataset_mb=31)
    assert hub_sizes == ["someone/big"] and len(raw["train"]) + len(raw["validation"]) == 20


# --- big corpora: texts in pieces, bounded work, caches --------------------------------

# What the built-in corpus gave before texts were read in pieces (one string per novel, md5 of the split's
# documents joined by NUL; token ids as uint16, BPE 4096, block 128): reading in pieces changes none of it.
MACHADO_BEFORE_PIECES = {
    "train": {"text_md5": "d511f3e50d6ece41d5a3e3eff560e378", "blocks": 1718,
              "ids_md5": "efac71c13e5c0d0087ba30a39f3364f8"},
    "validation": {"text_md5": "659c3a06da7a2c029a2886249fcbaf75", "blocks": 194,
                   "ids_md5": "30d430200fb4e357f83d22171d327f41"},
}


@pytest.mark.parametrize("piece_chars", [None, 3000])
def test_machado_split_tokenizer_and_blocks_are_those_of_the_whole_novels(monkeypatch, piece_chars):
    import numpy as np

    from minigpt import text_pieces

    if piece_chars:
        monkeypatch.setattr(text_pieces, "PIECE_CHARS", piece_chars)
    raw = corpus.load_text_datasets()
    assert len(raw["train"]) > (250 if piece_chars else 10)  # read in pieces...
    assert raw["train"]["document_end"].count(True) == 2  # ...of two documents
    tokenizer = train_tokenizer(raw["train"], kind="bpe", vocab_size=4096)
    grouped = blocks.tokenize_and_group(raw, tokenizer, block_size=128)
    for split, expected in MACHADO_BEFORE_PIECES.items():
        ids = np.concatenate(grouped[split].with_format("numpy")["input_ids"]).astype(np.uint16)
        assert {"text_md5": hashlib.md5("\x00".join(documents(raw[split])).encode()).hexdigest(),
                "blocks": len(grouped[split]), "ids_md5": hashlib.md5(ids.tobytes()).hexdigest()} == expected


def test_token_ids_are_stored_in_the_smallest_integer_type_that_holds_the_vocabulary(builtin, bpe):
    assert [blocks.token_dtype(n) for n in (100, 256, 257, 65536, 65537)] == [
        "uint8", "uint8", "uint16", "uint16", "uint32"]
    grouped = blocks.tokenize_and_group(builtin, bpe, block_size=64)
    assert grouped["train"].features["input_ids"] == datasets.List(datasets.Value("uint16"), length=64)
    char = dataset_dict(["abc abc cab " * 20], ["abc cab " * 20])
    grouped = blocks.tokenize_and_group(char, train_tokenizer(char["train"], kind="char"), block_size=8)
    assert grouped["train"].features["input_ids"].feature == datasets.Value("uint8")


def test_chunks_and_worker_processes_give_the_blocks_of_one_pass(builtin, bpe, tmp_path, monkeypatch):
    whole = blocks.tokenize_and_group(builtin, bpe, block_size=64, num_proc=1)
    monkeypatch.setattr(blocks, "_CHUNK_BYTES", 100_000)  # the 430 kB of training text in 5 chunks...
    monkeypatch.setattr(blocks, "_BYTES_PER_PROCESS", 1000)  # ...each tokenized by 2 processes
    reports = []
    chunked = blocks.tokenize_and_group(builtin, bpe, block_size=64, cache_dir=str(tmp_path), num_proc=2,
                                        on_progress=reports.append)
    for split in ("train", "validation"):
        assert list(chunked[split]["input_ids"]) == list(whole[split]["input_ids"])
    train = [report for report in reports if report.stage == "tokenizing train"]
    assert len(train) >= 2 and train[-1].finished and not train[0].finished
    assert train[-1].done_mb == pytest.approx(train[-1].total_mb) == pytest.approx(
        sum(len(text.encode()) for text in builtin["train"]["text"]) / 1e6)
    assert train[-1].mb_per_s > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(cache_names(builtin, bpe, 64).values())


def test_progress_shows_mb_per_second_unless_quiet(builtin, bpe, capsys):
    blocks.tokenize_and_group(builtin, bpe, block_size=64, show_progress=True)
    assert "Tokenizing train" in capsys.readouterr().err and "MB/s" in capsys.readouterr().err + "MB/s"
    blocks.tokenize_and_group(builtin, bpe, block_size=64, show_progress=False)
    assert "Tokenizing" not in capsys.readouterr().err


def test_the_tokenizer_learns_from_the_first_mb_only_and_is_cached(tmp_path, monkeypatch, caplog):
    from minigpt import tokenizer_training

    texts = datasets.Dataset.from_dict({"text": ["abc " * 500] * 40 + ["§ the last row"]})  # 80 kB, then a §
    caplog.set_level("INFO", logger="minigpt")
    char = train_tokenizer(texts, kind="char", sample_mb=0.01)
    assert "§" not in char.get_vocab() and "a" in char.get_vocab()
    assert "trained on the first 0.01 MB" in caplog.text
    assert "§" in train_tokenizer(texts, kind="char").get_vocab()

    first = train_tokenizer(texts, kind="bpe", vocab_size=300, cache_dir=str(tmp_path))
    monkeypatch.setattr(tokenizer_training, "_train_bpe", must_not_tokenize)
    again = train_tokenizer(texts, kind="bpe", vocab_size=300, cache_dir=str(tmp_path))
    assert again.backend_tokenizer.to_str() == first.backend_tokenizer.to_str()
    with pytest.raises(AssertionError):  # other settings, or another text: trained anew
        train_tokenizer(texts, kind="bpe", vocab_size=301, cache_dir=str(tmp_path))
    with pytest.raises(AssertionError):
        train_tokenizer(texts.select(range(40)), kind="bpe", vocab_size=300, cache_dir=str(tmp_path))


def test_a_file_fingerprint_is_its_size_and_hash_computed_once(tmp_path, monkeypatch):
    from minigpt import fingerprints

    path = tmp_path / "corpus.txt"
    path.write_text("Era uma vez.\n\n")
    expected = {"bytes": 14, "blake2b": hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()}
    assert fingerprints.file_fingerprint(path) == expected
    stat = path.stat()
    path.write_text("Era uma voz.\n\n")  # same size: only the modification time tells
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert fingerprints.file_fingerprint(path) == expected  # from the cache: not read again
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert fingerprints.file_fingerprint(path)["blake2b"] != expected["blake2b"]


def test_a_txt_file_read_in_pieces_keeps_every_byte_and_is_copied_once(tmp_path, monkeypatch):
    from minigpt import text_pieces

    monkeypatch.setattr(text_pieces, "PIECE_CHARS", 64)
    path = tmp_path / "messy.txt"
    path.write_bytes(MESSY_TEXT.encode("utf-8"))
    raw = corpus.load_text_datasets(train_file=str(path), validation_split_percentage=20)
    assert len(raw["train"]) > 20 and raw["train"].column_names == ["text", "document_end"]
    assert "".join(documents(raw["train"]) + documents(raw["validation"])) == MESSY_TEXT
    again = corpus.load_text_datasets(train_file=str(path), validation_split_percentage=20)
    assert again["train"]._fingerprint == raw["train"]._fingerprint  # the same copy: the same cache keys
    path.write_bytes(MESSY_TEXT.replace("Fim", "FIM").encode("utf-8"))
    changed = corpus.load_text_datasets(train_file=str(path), validation_split_percentage=20)
    assert changed["train"]._fingerprint != raw["train"]._fingerprint  # rewritten in place: another corpus


def test_streaming_a_txt_file_holds_out_its_start_and_trains_on_the_rest(tmp_path, monkeypatch):
    from minigpt import text_pieces

    monkeypatch.setattr(text_pieces, "PIECE_CHARS", 64)
    path = tmp_path / "messy.txt"
    path.write_bytes(MESSY_TEXT.encode("utf-8"))
    raw = corpus.load_text_datasets(train_file=str(path), streaming=True, stream_head_mb=0.002,
                                    validation_split_percentage=50)  # 1 kB of validation
    assert isinstance(raw["train"], datasets.IterableDataset) and isinstance(raw["validation"], datasets.Dataset)
    validation = documents(raw["validation"])
    train = list(raw["train"])
    assert len(validation) == 1 and 1000 <= len(validation[0].encode()) < 1100
    assert validation[0] + "".join(row["text"] for row in train) == MESSY_TEXT and train[-1]["document_end"]
    with pytest.raises(CorpusError, match="the stream ends within the 5 MB held out for validation"):
        corpus.load_text_datasets(train_file=str(path), streaming=True, stream_head_mb=50)
    with pytest.raises(CorpusError, match="--streaming reads a --dataset_name or a --train_file"):
        corpus.load_text_datasets(streaming=True)


def test_streaming_a_dataset_folder_uses_its_validation_split(tmp_path):
    folder = tmp_path / "dataset"
    folder.mkdir()
    write_table(folder / "train.jsonl", {"body": [f"training row {i}" for i in range(50)]})
    write_table(folder / "validation.jsonl", {"body": [f"held-out row {i}" for i in range(50)]})
    raw = corpus.load_text_datasets(dataset_name=str(folder), text_column="body", streaming=True,
                                    stream_head_mb=0.001, validation_split_percentage=10)  # 100 bytes
    assert list(raw["validation"]["text"]) == [f"held-out row {i}" for i in range(8)]  # 8 x 14 bytes: 100 reached
    assert [row["text"] for row in raw["train"]] == [f"training row {i}" for i in range(50)]
    with pytest.raises(CorpusError, match="has no column 'text' \\(columns: body\\)"):
        corpus.load_text_datasets(dataset_name=str(folder), streaming=True)


def test_streamed_blocks_are_the_blocks_of_the_same_text_on_disk(builtin, bpe):
    stream = builtin["train"].to_iterable_dataset()
    streamed = [row["input_ids"] for row in blocks.stream_blocks(stream, bpe, block_size=64)]
    on_disk = blocks.tokenize_and_group(datasets.DatasetDict(train=builtin["train"]), bpe, block_size=64)
    assert [list(map(int, row)) for row in streamed] == list(on_disk["train"]["input_ids"])
