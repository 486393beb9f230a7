"""A text in pieces of bounded size whose tokens are the whole text's tokens.

A long text (a .txt file is ONE document, of any size) is read, held out and tokenized in pieces of at most
PIECE_CHARS characters, so that memory never grows with the text. The cut rule keeps tokenization exact:

    a piece ends right before an ASCII whitespace character (space, tab, line break) that follows a
    character which is not whitespace.

Why this is exact: byte-level BPE pre-tokenizes with GPT-2's regex, in which no pre-token joins a
non-whitespace character to a whitespace character after it, so such a position is a pre-token boundary of
the whole text; and the regex's match at a position depends only on the text after it, within the piece (its
one lookahead, in `\\s+(?!\\S)`, only ever looks at whitespace followed by more text inside the piece, since a
piece never ends in whitespace but where its document ends). So the pieces' pre-tokens are the whole text's,
and BPE merges within pre-tokens: the pieces' tokens, concatenated, are the whole text's tokens. "\\n\\n" at
the very end of a string is one pre-token, "a\\n\\nB" gives "\\n", "\\n": cutting before a run of whitespace,
never inside or after it, is what keeps that. Character-level tokens do not depend on cuts at all.

Among the allowed cuts in the second half of the PIECE_CHARS window, a piece ends before a blank line (a new
paragraph), else before a line break, else before a space. A stretch of PIECE_CHARS characters without any
allowed cut (a text without whitespace, or a huge run of whitespace) is cut at PIECE_CHARS anyway: there, and
only there, BPE may tokenize the two sides differently from the whole text; no byte is lost either way.
"""

import re
from collections.abc import Iterable, Iterator

PIECE_CHARS = 1 << 16  # 64 Ki characters: small enough for any batch, large enough that a piece costs nothing

# Zero-width matches at the allowed cuts, best first: before a blank line, before a line break, before any space.
# (?<=\S) is "after a character that is not whitespace" (Python's \s is str.isspace, which covers every
# whitespace character of the tokenizers' regex engine).
_CUTS = (
    re.compile(r"(?<=\S)(?=\r?\n[ \t]*\r?\n)"),
    re.compile(r"(?<=\S)(?=[\r\n])"),
    re.compile(r"(?<=\S)(?=[ \t\n\r\f\v])"),
)
_LOOKAHEAD = 8  # characters past the window the cut patterns may need to see (a blank line: \r\n, tabs, \r\n)


def _cut(text: str, start: int, limit: int) -> int:
    """Where the piece that begins at `start` ends: the best allowed cut in (start + limit // 2, start + limit],
    else start + limit. It looks at most _LOOKAHEAD characters past the window, so that it decides the same
    whether `text` is the whole document or a buffer holding at least that much of it."""
    window_end = start + limit
    for pattern in _CUTS:
        cut = None
        for match in pattern.finditer(text, start + limit // 2 + 1, min(len(text), window_end + _LOOKAHEAD)):
            if match.start() > window_end:
                break
            cut = match.start()
        if cut is not None:
            return cut
    return window_end


def split_text(chunks: Iterable[str], limit: int | None = None) -> Iterator[str]:
    """The pieces of ONE document given as consecutive chunks of its text (a file read bit by bit, or the whole
    text as one chunk): the same pieces however the text is chunked. An empty document has no pieces.
    limit: the most characters in a piece (default PIECE_CHARS)."""
    limit = limit or PIECE_CHARS
    buffer, start = "", 0
    for chunk in chunks:
        buffer, start = buffer[start:] + chunk, 0
        while len(buffer) - start >= limit + _LOOKAHEAD:
            cut = _cut(buffer, start, limit)
            yield buffer[start:cut]
            start = cut
    while len(buffer) - start > limit:
        cut = _cut(buffer, start, limit)
        yield buffer[start:cut]
        start = cut
    if start < len(buffer):
        yield buffer[start:]


def read_pieces(path, limit: int | None = None) -> Iterator[str]:
    """The pieces of a UTF-8 text file, read `limit` characters at a time; newline="" keeps "\r\n" as it is."""
    limit = limit or PIECE_CHARS
    with open(path, encoding="utf-8", newline="") as file:
        yield from split_text(iter(lambda: file.read(limit), ""), limit)
