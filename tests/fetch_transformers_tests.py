"""Fetch transformers' own model test mixins for the installed transformers version.

The transformers sdist on PyPI ships the shared test mixins (``tests/test_modeling_common.py`` with
``ModelTesterMixin``, ``tests/test_configuration_common.py`` with ``ConfigTester``) but not the modules
they import relatively (``tests/generation/test_utils.py``, ``tests/exporters/test_export.py``,
``tests/utils/test_configuration_utils.py``). This script

* downloads the sdist of ``transformers.__version__`` with ``pip download`` into a cache dir,
* extracts the two mixin files into ``tests/_transformers_suite/hf_transformers_tests/``
  (a package name that cannot collide with anything under ``tests/``),
* extracts the relatively imported modules too when the sdist has them, and otherwise writes small
  stand-ins (marked ``SUITE_STUB = True``): an empty ``ExportTesterMixin``, an empty
  ``GenerationTesterMixin`` and the ``config_common_kwargs`` dict of transformers 5.x,
* writes a ``conftest.py`` into ``tests/_transformers_suite/`` that keeps pytest from collecting the
  extracted files.

It is idempotent: nothing is downloaded or extracted again while ``tests/_transformers_suite/VERSION``
matches the installed version. Only PyPI is contacted, through pip.

Usage::

    python tests/fetch_transformers_tests.py [--force] [--cache-dir DIR]

or, from Python, ``ensure_suite()`` (returns the folder to put on ``sys.path``).

Environment: ``TRANSFORMERS_TESTS_CACHE`` (download cache, default ``<repo>/.cache/transformers-sdist``),
``TRANSFORMERS_TESTS_SDIST`` (path of an already downloaded ``transformers-X.tar.gz`` to use instead of pip).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
SUITE_DIR = HERE / "_transformers_suite"
PACKAGE = "hf_transformers_tests"
DEFAULT_CACHE = REPO_ROOT / ".cache" / "transformers-sdist"
# Bump when the layout written below changes, so existing extractions are redone.
LAYOUT_VERSION = "1"

# sdist path (relative to its "tests/" folder) -> path inside the package. Required files must be in the sdist.
REQUIRED = ["test_modeling_common.py", "test_configuration_common.py"]
# Imported relatively by the required files; taken from the sdist when present there, else stubbed.
STUBS = {
    "exporters/test_export.py": '''"""Stand-in: transformers' sdist does not ship tests/exporters/test_export.py.

The export tests (torch.export / ONNX / ExecuTorch) it would add to ModelTesterMixin are not run.
"""

SUITE_STUB = True


class ExportTesterMixin:
    pass
''',
    "generation/test_utils.py": '''"""Stand-in: transformers' sdist does not ship tests/generation/test_utils.py.

ModelTesterMixin only uses GenerationTesterMixin in an issubclass() check
(test_generation_tester_mixin_inheritance). Inheriting this empty class runs no generation test.
"""

SUITE_STUB = True


class GenerationTesterMixin:
    pass
''',
    "utils/test_configuration_utils.py": '''"""Stand-in: transformers' sdist does not ship tests/utils/test_configuration_utils.py.

Only ``config_common_kwargs`` is needed (by ConfigTester.check_config_arguments_init); this is its
transformers 5.x value: the attributes every PreTrainedConfig must accept as kwargs.
"""

SUITE_STUB = True

config_common_kwargs = {
    "return_dict": False,
    "output_hidden_states": True,
    "output_attentions": True,
    "dtype": "float16",
    "chunk_size_feed_forward": 5,
    "architectures": ["BertModel"],
    "id2label": {0: "label"},
    "label2id": {"label": "0"},
    "problem_type": "regression",
}
''',
}

CONFTEST = '''# Written by tests/fetch_transformers_tests.py: the files below are libraries (transformers' test mixins),
# imported by tests/test_transformers_suite.py; pytest must not collect them itself.
collect_ignore_glob = ["*"]
'''

_OFFLINE_MARKERS = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "No route to host",
    "Connection refused",
    "ConnectTimeout",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ProxyError",
    "SSLError",
    "Max retries exceeded",
)


class FetchError(RuntimeError):
    """The suite could not be fetched. ``offline`` is True when pip could not reach the index."""

    def __init__(self, message: str, offline: bool = False, unavailable: bool = False, summary: str | None = None):
        super().__init__(message)
        self.offline = offline
        self.unavailable = unavailable
        self.summary = summary or message.splitlines()[0]


def installed_version() -> str:
    import transformers

    return transformers.__version__


def _pip_download(requirement: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
        "--no-binary", ":all:", "--retries", "2", "--timeout", "30", "-d", str(dest), requirement,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        offline = any(m in out for m in _OFFLINE_MARKERS)
        unavailable = not offline and (
            "No matching distribution found" in out or "Could not find a version" in out
        )
        lines = out.strip().splitlines()
        cause = next((ln.strip() for ln in lines if any(m in ln for m in _OFFLINE_MARKERS)), None) if offline else None
        if offline:
            summary = f"no network to the package index ({cause[:300]})"
        elif unavailable:
            summary = f"{requirement} is not on the package index ({lines[-1] if lines else ''})"
        else:
            summary = lines[-1] if lines else ""
        tail = "\n".join(lines[-15:])
        raise FetchError(
            f"`{' '.join(cmd)}` failed (exit {proc.returncode}): {summary}\n{tail}", offline, unavailable, summary
        )
    name, _, version = requirement.partition("==")
    norm = re.sub(r"[-_.]+", "[-_.]", name)
    for path in sorted(dest.iterdir()):
        if re.match(rf"(?i){norm}-{re.escape(version)}[-.]", path.name):
            return path
    raise FetchError(f"pip download of {requirement} succeeded but nothing matching it is in {dest}:\n{out[-2000:]}")


def _find_cached_sdist(cache_dir: Path, version: str) -> Path | None:
    path = cache_dir / f"transformers-{version}.tar.gz"
    return path if path.is_file() and tarfile.is_tarfile(path) else None


def get_sdist(version: str, cache_dir: Path) -> Path:
    env = os.environ.get("TRANSFORMERS_TESTS_SDIST")
    if env:
        path = Path(env)
        if not path.is_file():
            raise FetchError(f"TRANSFORMERS_TESTS_SDIST={env} is not a file")
        return path
    cached = _find_cached_sdist(cache_dir, version)
    if cached:
        return cached
    return _pip_download(f"transformers=={version}", cache_dir)


def _extract(sdist: Path, version: str, target: Path) -> None:
    with tarfile.open(sdist) as tf:
        members = {}
        for m in tf.getmembers():
            parts = m.name.split("/", 2)  # "transformers-X/tests/...".
            if len(parts) == 3 and parts[1] == "tests" and m.isfile():
                members[parts[2]] = m
        missing = [f for f in REQUIRED if f not in members]
        if missing:
            raise FetchError(f"{sdist.name} has no tests/{', tests/'.join(missing)}")
        wanted = list(REQUIRED)
        for rel in STUBS:
            if rel in members:  # The real module ships in this version: use it, with its package's other files.
                folder = rel.rsplit("/", 1)[0] + "/"
                wanted += [n for n in members if n.startswith(folder) and n.endswith(".py")]
        for rel in sorted(set(wanted)):
            dest = target / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(tf.extractfile(members[rel]).read())
    for rel, text in STUBS.items():
        dest = target / rel
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(text)
    for folder in [target, *{p.parent for p in target.rglob("*.py")}]:
        init = folder / "__init__.py"
        if not init.exists():
            init.write_text("")
    (target / "__init__.py").write_text(
        f'"""transformers {version} test mixins, extracted from {sdist.name} by tests/fetch_transformers_tests.py."""\n'
        f'TRANSFORMERS_VERSION = "{version}"\n'
    )


def _stamp(version: str) -> str:
    return f"{version} layout={LAYOUT_VERSION}\n"


def is_current(version: str | None = None) -> bool:
    version = version or installed_version()
    stamp = SUITE_DIR / "VERSION"
    return (
        stamp.is_file()
        and stamp.read_text() == _stamp(version)
        and (SUITE_DIR / PACKAGE / "test_modeling_common.py").is_file()
        and (SUITE_DIR / "conftest.py").is_file()
    )


@contextlib.contextmanager
def _locked(cache_dir: Path):
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".lock", "w") as fh:
        try:
            import fcntl

            fcntl.flock(fh, fcntl.LOCK_EX)
        except ImportError:  # Not POSIX: no lock.
            pass
        yield


def ensure_suite(version: str | None = None, force: bool = False, cache_dir: Path | str | None = None) -> Path:
    """Make sure ``tests/_transformers_suite`` holds the mixins of ``version`` (default: installed).

    Returns the folder to put on ``sys.path`` (it holds the ``hf_transformers_tests`` package). The mixins also
    import ``parameterized``, pinned in requirements.txt. Raises FetchError.
    """
    version = version or installed_version()
    cache_dir = Path(cache_dir or os.environ.get("TRANSFORMERS_TESTS_CACHE") or DEFAULT_CACHE)
    if not force and is_current(version):
        return SUITE_DIR
    with _locked(cache_dir):
        if not force and is_current(version):  # Another process did it meanwhile.
            return SUITE_DIR
        SUITE_DIR.mkdir(parents=True, exist_ok=True)
        (SUITE_DIR / "conftest.py").write_text(CONFTEST)
        sdist = get_sdist(version, cache_dir)
        tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=SUITE_DIR))
        try:
            _extract(sdist, version, tmp / PACKAGE)
            shutil.rmtree(SUITE_DIR / PACKAGE, ignore_errors=True)
            os.replace(tmp / PACKAGE, SUITE_DIR / PACKAGE)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        (SUITE_DIR / "VERSION").write_text(_stamp(version))
    return SUITE_DIR


def add_to_sys_path(suite_dir: Path = SUITE_DIR) -> None:
    if suite_dir.is_dir() and str(suite_dir) not in sys.path:
        sys.path.insert(0, str(suite_dir))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--version", help="transformers version (default: the installed one)")
    ap.add_argument("--force", action="store_true", help="download/extract again even if up to date")
    ap.add_argument("--cache-dir", help=f"where the sdist is downloaded (default {DEFAULT_CACHE})")
    args = ap.parse_args(argv)
    try:
        path = ensure_suite(args.version, force=args.force, cache_dir=args.cache_dir)
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"transformers {args.version or installed_version()} test mixins ready in {path / PACKAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
