"""Other transformers versions for tests/test_portability.py, beside the pinned one.

Each is a folder of `pip install --target DIR --no-deps` packages: transformers with the tokenizers and
huggingface-hub versions it needs. Put first on a process's path, it replaces those three packages and keeps the
installed torch, numpy, safetensors and the rest: what a project that pins an older transformers has. The folders
live in .cache/compat/ (git-ignored); .ci/run builds them before the tests, and a test that finds one missing
builds it (so the test never passes without them).

    python tests/transformers_envs.py     # build every one that is missing
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from filelock import FileLock

# tokenizers: both want <=0.23.0, and 0.23.0 was never published. huggingface-hub: 4.57 wants <1.0, 5.0 >=1.3,<2.
STACKS = {
    "4.57.1": ("transformers==4.57.1", "tokenizers==0.22.2", "huggingface-hub==0.36.2"),
    "5.0.0": ("transformers==5.0.0", "tokenizers==0.22.2", "huggingface-hub==1.33.0"),
}
ROOT = Path(__file__).resolve().parents[1] / ".cache" / "compat"
_STAMP = "STACK"  # in each folder: the packages it was built from, written last


def env_dir(version: str) -> Path:
    """The folder holding transformers `version` (built or not)."""
    return ROOT / f"transformers-{version}"


def _is_built(folder: Path, packages: tuple[str, ...]) -> bool:
    stamp = folder / _STAMP
    return stamp.is_file() and stamp.read_text() == "\n".join(packages)


def ensure_env(version: str) -> Path:
    """The folder of transformers `version`, built with pip first if it is missing (needs PyPI)."""
    folder, packages = env_dir(version), STACKS[version]
    if _is_built(folder, packages):
        return folder
    ROOT.mkdir(parents=True, exist_ok=True)
    with FileLock(str(ROOT / f".{folder.name}.lock")):  # one builder at a time (parallel test runs)
        if _is_built(folder, packages):
            return folder
        building = ROOT / f".{folder.name}.building"
        shutil.rmtree(building, ignore_errors=True)
        done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                               "--no-deps", "--target", str(building), *packages],
                              capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            shutil.rmtree(building, ignore_errors=True)
            raise RuntimeError(f"could not install {' '.join(packages)} with pip:\n{done.stderr[-2000:]}")
        (building / _STAMP).write_text("\n".join(packages))
        shutil.rmtree(folder, ignore_errors=True)
        os.rename(building, folder)
    return folder


if __name__ == "__main__":
    for version in STACKS:
        print(f"transformers {version}: {ensure_env(version)}")
