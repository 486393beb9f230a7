"""The cut rule of minigpt.text_pieces: a long text in bounded pieces whose tokens are the whole text's tokens."""

import random
import re

import datasets
import pytest

from minigpt import corpus, text_pieces
from minigpt.text_pieces import split_text
from minigpt.tokenizer_training import train_tokenizer

ALLOWED_CUT = re.compile(r"(?<=\S)(?=[ \t\n\r\f\v])")


@pytest.fixture(scope="module")
def novels():
    return corpus.builtin_corpus("machado").documents()


@pytest.fixture(scope="module")
def bpe(novels):
    """Byte-level BPE learned from the novels: it has "ĊĊ" (a paragraph break) and many words as tokens."""
    return train_tokenizer(datasets.Dataset.from_dict({"text": novels}), kind="bpe", vocab_size=1024)


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def cuts(text: str, pieces: list[str]) -> list[int]:
    positions, at = [], 0
    for piece in pieces[:-1]:
        at += len(piece)
        positions.append(at)
    return positions


def test_pieces_join_to_the_text_stay_bounded_and_do_not_depend_on_how_the_text_arrives():
    rng = random.Random(0)
    alphabet = ["a", "B", " ", "\n", "\r\n", "\t", "é", "\n\n", "   ", ".", "\u00a0", "\x1c", "🙂", "12"]
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 300)))
        limit = rng.randint(8, 40)
        pieces = list(split_text([text], limit))
        assert "".join(pieces) == text and all(0 < len(piece) <= limit for piece in pieces)
        ends = sorted(rng.sample(range(len(text) + 1), min(len(text) + 1, 5)))
        chunks = [text[a:b] for a, b in zip([0, *ends], [*ends, len(text)])]  # a file read bit by bit
        assert list(split_text(chunks, limit)) == pieces


def test_a_file_is_read_in_the_same_pieces(tmp_path, novels):
    path = tmp_path / "novel.txt"
    path.write_bytes(novels[1].replace("\n", "\r\n").encode("utf-8"))
    text = path.read_bytes().decode("utf-8")
    assert list(text_pieces.read_pieces(path, 5000)) == list(split_text([text], 5000))


@pytest.mark.parametrize("limit", [300, 5000])
def test_bpe_tokens_of_the_pieces_are_the_tokens_of_the_whole_novels(bpe, novels, limit):
    for novel in novels:
        pieces = list(split_text([novel], limit))
        assert len(pieces) > len(novel) // limit  # many cuts, all of them allowed ones
        assert all(ALLOWED_CUT.match(novel, position) for position in cuts(novel, pieces))
        assert [i for piece in pieces for i in ids(bpe, piece)] == ids(bpe, novel)


@pytest.mark.parametrize("transform", [
    lambda text: text.replace("\n", "\r\n"),  # Windows line breaks
    lambda text: text.replace("\n", " "),  # one endless line: cut before spaces
    lambda text: text.replace("\n\n", "\n \n  \t\n"),  # blank lines holding spaces and tabs
])
def test_bpe_tokens_of_the_pieces_are_the_whole_text_tokens_on_adversarial_text(bpe, novels, transform):
    text = transform(novels[1][:60_000])
    pieces = list(split_text([text], 700))
    assert max(map(len, pieces)) <= 700 and len(pieces) > 60_000 // 700
    assert [i for piece in pieces for i in ids(bpe, piece)] == ids(bpe, text)


def test_cutting_after_a_run_of_newlines_instead_would_change_the_tokens(bpe):
    """Why the rule cuts BEFORE whitespace: "\\n\\n" ending a string is one pre-token, inside a text it is two."""
    text = "Era uma vez.\n\nCapitú olhou."
    assert ids(bpe, "Era uma vez.") + ids(bpe, "\n\nCapitú olhou.") == ids(bpe, text)  # the rule's cut
    assert ids(bpe, "Era uma vez.\n\n") + ids(bpe, "Capitú olhou.") != ids(bpe, text)  # a cut after the break


def test_a_text_without_whitespace_is_still_cut_at_the_limit_and_only_there_may_tokens_differ(bpe):
    text = "palavrasemfim" * 200  # 2,600 characters, no allowed cut anywhere
    pieces = list(split_text([text], 1000))
    assert [len(piece) for piece in pieces] == [1000, 1000, 600]  # bounded all the same
    assert not any(ALLOWED_CUT.match(text, position) for position in cuts(text, pieces))  # forced cuts only
    tokens = [ids(bpe, piece) for piece in pieces]
    assert bpe.decode([i for piece in tokens for i in piece]) == text  # no byte lost
    assert [i for piece in tokens for i in piece] != ids(bpe, text)  # the pre-token across a forced cut is split
