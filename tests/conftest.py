"""Shared fixtures: tiny, randomly initialised models (no download, milliseconds to build)."""

import pytest
import torch

from configuration_minigpt import MiniGPTConfig
from modeling_minigpt import MiniGPTForCausalLM

collect_ignore = ["_transformers_suite"]  # transformers' own test files, extracted by fetch_transformers_tests.py

VOCAB = 64
EOS, PAD = 1, 0


def make_tiny_model(seed: int = 0, attn_implementation: str = "sdpa", **overrides) -> MiniGPTForCausalLM:
    torch.manual_seed(seed)
    config = MiniGPTConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64,
        bos_token_id=EOS, eos_token_id=EOS, pad_token_id=PAD, **overrides,
    )
    model = MiniGPTForCausalLM._from_config(config, attn_implementation=attn_implementation)
    # Default init gives nearly flat next-token distributions; a larger embedding gives a spread like a real model's.
    with torch.no_grad():
        model.model.embed_tokens.weight.normal_(0, 0.15)
    return model.eval()


@pytest.fixture
def tiny_model():
    return make_tiny_model()


@pytest.fixture
def prompt():
    torch.manual_seed(1)
    return torch.randint(2, VOCAB, (1, 6))


def start_without_project(script: str, folder, first_on_path=None):
    """Start Python code in a fresh process that cannot import the project (as a user's own code would), offline,
    in `folder`. first_on_path: a folder of packages that come before the installed ones (another transformers
    version, see tests/transformers_envs.py). Several can run at once (each is mostly its imports);
    `outputs_of` waits for them."""
    import os
    import subprocess
    import sys

    import site

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HOME=str(folder / "hf_home"), HF_HUB_OFFLINE="1")
    # -S skips the .pth files, so an editable install of this project (pip install -e .) is not seen either;
    # the installed libraries are put back on the path by hand.
    packages = ([str(first_on_path)] if first_on_path else []) + site.getsitepackages()
    guard = (f"import sys\nsys.path.extend({packages!r})\n"
             'import importlib.util\nassert importlib.util.find_spec("modeling_minigpt") is None\n')
    return subprocess.Popen([sys.executable, "-S", "-c", guard + script], cwd=folder, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def outputs_of(started: dict, timeout: int = 300) -> dict:
    """What each of the processes started together printed ({name: stdout}; stderr too where it was sent there),
    once all have ended; fails the test with the output of one that failed, and kills those still running."""
    try:
        done = {name: process.communicate(timeout=timeout) for name, process in started.items()}
    finally:
        for process in started.values():
            if process.poll() is None:
                process.kill()
    for name, (out, err) in done.items():
        assert started[name].returncode == 0, f"{name}: {(err or out)[-3000:]}"
    return {name: out for name, (out, _) in done.items()}


def make_tiny_gpt2_folder(folder, text: str = "Era uma vez a Capitú, e a mãe; a casa, o coração.\n\n" * 50):
    """A GPT-2 checkpoint as the Hub holds one (GPT2LMHeadModel in safetensors + its tokenizer), tiny and
    random, built offline: what `from_gpt2` and `--model_name_or_path` read in place of the real gpt2."""
    import datasets
    from transformers import GPT2Config, GPT2LMHeadModel

    from minigpt.tokenizer_training import train_tokenizer

    tokenizer = train_tokenizer(datasets.Dataset.from_dict({"text": [text]}), kind="bpe", vocab_size=300)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def train_py_runs(tmp_path_factory):
    """train.py in its own process, twice at once (each is mostly its imports): `finished`, a finished 10-step run
    from scratch (checkpoints at 5 and 10: test_integrity.py's `command`) with --disable_tqdm, and `log_level_error`,
    a 4-step run with --log_level error. Fresh processes because the console is read as a person sees it: bars and
    log levels are process-wide, runs in this process change them, and what a process prints on import counts
    too. Returns {name: (corpus, folder, exit code, what the console showed)}."""
    import subprocess
    import sys

    from test_integrity import command
    from test_training import ROOT, corpus_file

    root = tmp_path_factory.mktemp("train_py")
    corpus = corpus_file(root)
    flags = {"finished": (10, ["--disable_tqdm", "true"]), "log_level_error": (4, ["--log_level", "error"])}
    folders = {name: root / name / "run" for name in flags}  # each folder is named `run`, as the tests expect
    started = {name: subprocess.Popen([sys.executable, "train.py", *map(str, command(corpus, folders[name],
                                                                                     max_steps=steps)), *extra],
                                      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for name, (steps, extra) in flags.items()}
    shown = outputs_of(started)
    return {name: (corpus, folders[name], started[name].returncode, shown[name]) for name in started}


@pytest.fixture(scope="session")
def finished_run(train_py_runs):
    """train_py_runs' finished run: (corpus, the folder, what the console showed). Shared by the tests of run
    identity, the console and eval-only; they copy the folder before writing to it."""
    corpus, folder, code, shown = train_py_runs["finished"]
    assert code == 0, shown[-3000:]
    return corpus, folder, shown


def pytest_collection_finish(session):
    """Freeze what the imports and the collection made (libraries, test modules: ~600k objects that live as long as
    the session), so that the gc.collect() the Trainer runs at the start of each of the tests' trainings walks only
    what the tests made since (0.4 s a training before, 13 s in all)."""
    import gc

    gc.collect()
    gc.freeze()


def pytest_sessionstart(session):
    """The tests start ~25 Python processes that import the project (train.py runs, ranks, the app, the notebooks'
    kernels). Where PYTHONDONTWRITEBYTECODE is set, as on this project's machines, none of them keeps the modules it
    compiles, so each compiles the project again (~0.3 s of CPU): compiled once here, they read the .pyc files."""
    import compileall
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for folder in ("minigpt", "space"):
        compileall.compile_dir(root / folder, quiet=1)
    for file in root.glob("*.py"):
        compileall.compile_file(file, quiet=1)
