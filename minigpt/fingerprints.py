"""What a corpus file holds, in two numbers: its size and a BLAKE2b hash of its bytes.

They go into a run's settings (a changed file is another corpus, refused like any changed setting) and into the
cache keys of the tokenizer and the tokenized data. Hashing reads the whole file (about 1 GB/s), so the result is
kept beside the datasets cache, keyed by the file's path, size and modification time: a file is hashed again only
when one of those changes.
"""

import hashlib
import json
import os
from pathlib import Path

import datasets

_READ_BYTES = 1 << 20


def _cache_dir() -> Path:
    return Path(datasets.config.HF_DATASETS_CACHE) / "minigpt" / "fingerprints"


def file_fingerprint(path) -> dict:
    """{"bytes": size, "blake2b": hex digest of the content} of the file at `path`."""
    real = os.path.realpath(path)
    stat = os.stat(real)
    where = json.dumps([real, stat.st_size, stat.st_mtime_ns])
    cached = _cache_dir() / f"{hashlib.sha256(where.encode()).hexdigest()[:32]}.json"
    try:
        return json.loads(cached.read_text())
    except (OSError, ValueError):
        pass
    digest = hashlib.blake2b(digest_size=16)
    with open(real, "rb") as file:
        while block := file.read(_READ_BYTES):
            digest.update(block)
    fingerprint = {"bytes": stat.st_size, "blake2b": digest.hexdigest()}
    after = os.stat(real)
    if (after.st_size, after.st_mtime_ns) != (stat.st_size, stat.st_mtime_ns):  # written to while being read
        return file_fingerprint(path)
    try:  # written whole or not at all; an unwritable cache only costs hashing again next time
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps(fingerprint))
        partial.replace(cached)
    except OSError:
        pass
    return fingerprint


def cache_key(kind: str, parts) -> str:
    """A file-name-safe key for a cache entry: `kind` and a hash of `parts` (anything JSON can write)."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return f"{kind}-{digest[:24]}"
