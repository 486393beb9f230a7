"""The models the app offers, and a thread-safe cache of the loaded ones.

    untrained/<corpus>  a random MiniGPT with a BPE tokenizer trained on that built-in corpus: ready at start, no
                 training ("untrained": the default corpus's; the app picks the one of the visitor's chosen corpus)
    run/<name>   a finished training run in the app's runs folder (found at start, added when a run ends)
    dir/<name>   a saved model folder named when the app was launched (`python app.py --model DIR`)
    step-0/<name>  that run's model before its first step (its step-0/ folder, its tokenizer)
    latest       the newest finished run (Compare's default "after training"); None while there is none
    latest-step-0  the newest run before training (Compare's default "before training")
    pretrained/<name>  a pre-trained GPT-2 (a Hub name, or a local GPT-2 folder) converted with from_gpt2 when first
                 chosen: the chapter's foundation model beside the visitor's tiny one (needs the network for a Hub name)

A run is a folder of the runs folder with the app's record of it (app_run.json, written when its training ended):
a folder without one (a run cut off by a killed app, another program's) is never listed. Its settings are the
pipeline's own record, run_settings.json. A run belongs to the
visitor who started it (`owner` in its record, a hash of their browser's id or Hugging Face user): the list,
`latest` and every lookup take the viewer's hash and show them only their own runs and the models nobody owns
(launch-time folders). `viewer=None` sees everything (the app's own bookkeeping, or a classroom launched with
public runs).

Weights load from safetensors only (`use_safetensors=True`; a folder without *.safetensors is refused): a pickle
file from an upload or a stranger's folder is never unpickled.
"""

import json
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from transformers import AutoTokenizer

from configuration_minigpt import PRESETS
from minigpt.corpus import BUILTIN_CORPORA, DEFAULT_BUILTIN_CORPUS
from minigpt.errors import SetupError
from minigpt.loading import count_parameters, load_pretrained, untrained_model
from minigpt.run_folder import INITIAL_DIR, RUN_SETTINGS_FILE
from minigpt.tokenizer_training import builtin_tokenizer
from space.texts import CORPUS_SHORT, PRETRAINED_PARAMETERS, fmt, format_parameters, msg, preset_shown

logger = logging.getLogger("minigpt.app")

UNTRAINED = "untrained"  # the default built-in corpus's untrained model (untrained_key)
LATEST = "latest"
LATEST_INITIAL = "latest-step-0"
APP_RUN_FILE = "app_run.json"  # what the app knows about a run it trained (owner, steps, stopped, corpus)


def untrained_key(corpus: str | None) -> str:
    """The untrained model with the tokenizer of `corpus` (a built-in corpus; else the default one's)."""
    return f"{UNTRAINED}/{corpus if corpus in BUILTIN_CORPORA else DEFAULT_BUILTIN_CORPUS}"


def initial_key(run_name: str) -> str:
    return f"{INITIAL_DIR}/{run_name}"


class ModelError(ValueError):
    """A model cannot be offered or loaded: one line saying why."""


@dataclass(frozen=True)
class ModelEntry:
    key: str
    kind: str  # untrained | run | initial (a run's step 0) | dir | pretrained
    name: str
    path: str | None
    created: float
    summary: dict = field(default_factory=dict, hash=False, compare=False)

    def label(self, lang: str = "en") -> str:
        s = self.summary
        size = preset_shown(s.get("size", ""), lang)
        if self.kind == "untrained":
            return msg(lang, "label_untrained", size=size, corpus=CORPUS_SHORT[lang].get(s.get("corpus"), ""))
        if self.kind == "initial":
            return msg(lang, "label_initial", name=self.name, size=size)
        bits = [size] if size else []
        if s.get("eval_loss") is not None:
            bits.append(msg(lang, "label_val_loss", loss=fmt(s["eval_loss"], lang, ".2f")))
        if s.get("stopped"):
            bits.append(msg(lang, "label_stopped"))
        if self.kind == "pretrained":
            return msg(lang, "label_pretrained", name=self.name, size=format_parameters(s.get("parameters"), lang))
        name = f"{msg(lang, 'label_dir')}: {self.name}" if self.kind == "dir" else self.name
        return f"{name} ({', '.join(bits)})" if bits else name


def is_finished_model_dir(path: Path) -> bool:
    """A saved model folder: weights, config and tokenizer. The pipeline builds a finished folder beside its
    target and swaps it in whole (minigpt.run_folder), so a folder under its own name is complete."""
    return (
        path.is_dir()
        and any(path.glob("*.safetensors"))
        and (path / "config.json").is_file()
        and ((path / "tokenizer.json").is_file() or (path / "tokenizer_config.json").is_file())
    )


def _size_of(config: dict) -> str:
    for name, preset in PRESETS.items():
        if all(config.get(k) == v for k, v in preset.items() if k != "max_position_embeddings"):
            return name
    layers, width = config.get("num_hidden_layers"), config.get("hidden_size")
    return f"{layers}x{width}" if layers and width else ""


def parameters_of(config: dict) -> int | None:
    """How many weights a model of this config.json has (minigpt.loading.count_parameters); None for a config
    that names no model transformers knows."""
    try:
        return count_parameters(config)
    except (KeyError, TypeError, ValueError):
        return None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def summarize_model_dir(path: Path) -> dict:
    config = _read_json(path / "config.json")
    results = _read_json(path / "all_results.json")
    settings = _read_json(path / RUN_SETTINGS_FILE)
    app_run = _read_json(path / APP_RUN_FILE)
    preset = settings.get("preset") if settings and not settings.get("model_name_or_path") else None
    return {
        "size": preset or _size_of(config),
        "context": config.get("max_position_embeddings") or config.get("n_positions"),
        "vocab_size": config.get("vocab_size"),
        "eval_loss": results.get("eval_loss"),
        "eval_perplexity": results.get("eval_perplexity"),
        "steps": app_run.get("steps"),
        "stopped": app_run.get("stopped", False),
        "corpus": app_run.get("corpus"),
        "parameters": parameters_of(config),
        "train_tokens": results.get("train_tokens"),
        "owner": app_run.get("owner"),
    }


def load_model_dir(path: str | Path):
    """(model, tokenizer) from a saved MiniGPT (or GPT-2) folder, from safetensors only, in eval mode."""
    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"{path}: no such folder")
    if not any(path.glob("*.safetensors")):
        raise ModelError(f"{path.name}: no .safetensors weights (only safetensors files are loaded)")
    try:  # the pipeline's loader: MiniGPT or GPT-2 (through from_gpt2), safetensors only
        model = load_pretrained(str(path))
        tokenizer = AutoTokenizer.from_pretrained(path)
    except SetupError as error:
        raise ModelError(f"{path.name}: cannot be loaded ({str(error).split(': ', 1)[-1]})") from None
    except (OSError, ValueError) as error:
        raise ModelError(f"{path.name}: cannot be loaded ({str(error).splitlines()[0]})") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer


def load_pretrained_gpt2(name: str, name_or_path: str):
    """(model, tokenizer) of a GPT-2 checkpoint (Hub name or folder) as a MiniGPT, through the pipeline's loader."""
    try:
        model = load_pretrained(name_or_path)  # from_gpt2, safetensors only
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except (SetupError, OSError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ModelError(f"the pre-trained model {name} could not be loaded: it comes from the Hugging Face Hub, "
                         f"which may be unreachable from here ({reason}); use a model trained in the app") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer


class ModelRegistry:
    """Every model the app offers, and the loaded ones (LRU cache). Safe to use from many threads."""

    def __init__(self, runs_dir: str | Path, model_dirs=(), untrained_preset: str = "tiny",
                 untrained_vocab_size: int = 2048, cache_size: int = 4, pretrained=()):
        self.runs_dir = Path(runs_dir)
        self.cache_size = cache_size
        self._lock = threading.RLock()
        self._entries: dict[str, ModelEntry] = {}
        self._loaded: OrderedDict[str, tuple] = OrderedDict()
        self._loading: dict[str, threading.Lock] = {}
        self.version = 0  # grows whenever the list of models changes: the app refreshes its dropdowns then

        start = time.perf_counter()
        self._untrained = {}  # key -> (model, tokenizer): one per built-in corpus, its tokenizer beside it
        for corpus in BUILTIN_CORPORA.values():
            tokenizer = builtin_tokenizer(untrained_vocab_size, corpus.name)
            model = untrained_model(untrained_preset, tokenizer)
            key = untrained_key(corpus.name)
            self._untrained[key] = (model, tokenizer)
            self._add(ModelEntry(key, "untrained", UNTRAINED, None, 0.0,
                                 {"size": untrained_preset, "context": model.config.max_position_embeddings,
                                  "vocab_size": model.config.vocab_size, "parameters": model.num_parameters(),
                                  "corpus": corpus.name}))
        logger.info("untrained %s models ready in %.1fs", untrained_preset, time.perf_counter() - start)
        for folder in model_dirs:
            self.add_dir(folder)
        for name in pretrained:
            self.add_pretrained(name)
        self.scan_runs()

    # -- the list ---------------------------------------------------------------------------------------------

    def _add(self, entry: ModelEntry) -> ModelEntry:
        with self._lock:
            self._entries[entry.key] = entry
            self._loaded.pop(entry.key, None)  # a re-added run (same folder) is loaded afresh
            self.version += 1
        return entry

    def add_dir(self, folder: str | Path) -> ModelEntry:
        """A saved model folder named at launch; refused (ModelError) unless it is a complete safetensors model."""
        path = Path(folder).expanduser().resolve()
        if not is_finished_model_dir(path):
            raise ModelError(f"{folder}: not a saved model folder (needs *.safetensors, config.json and a tokenizer)")
        name = path.name
        with self._lock:
            taken = {e.name for e in self._entries.values() if e.kind == "dir"}
            suffix = 2
            while name in taken:
                name, suffix = f"{path.name}-{suffix}", suffix + 1
            return self._add(ModelEntry(f"dir/{name}", "dir", name, str(path), path.stat().st_mtime,
                                        summarize_model_dir(path)))

    def add_pretrained(self, name_or_path: str) -> ModelEntry:
        """A pre-trained GPT-2 offered by name; nothing is downloaded until a visitor picks it."""
        name = str(name_or_path).strip()
        path = Path(name).expanduser()
        if path.is_dir():
            if not is_finished_model_dir(path):
                raise ModelError(f"{name}: not a saved model folder (needs *.safetensors, config.json and a tokenizer)")
            name, parameters = path.name, parameters_of(_read_json(path / "config.json"))
        else:
            parameters = PRETRAINED_PARAMETERS.get(name)
        return self._add(ModelEntry(f"pretrained/{name}", "pretrained", name, str(path) if path.is_dir() else name,
                                    0.0, {"parameters": parameters}))

    def add_run(self, folder: str | Path) -> ModelEntry:
        path = Path(folder).resolve()
        if not is_finished_model_dir(path):
            raise ModelError(f"{path.name}: the run did not leave a complete model")
        if not (path / APP_RUN_FILE).is_file():
            raise ModelError(f"{path.name}: not a run of this app (no {APP_RUN_FILE})")
        summary = summarize_model_dir(path)
        entry = self._add(ModelEntry(f"run/{path.name}", "run", path.name, str(path), path.stat().st_mtime, summary))
        if is_finished_model_dir(path / INITIAL_DIR):  # runs trained before step 0 was kept have none
            self._add(ModelEntry(initial_key(path.name), "initial", path.name, str(path / INITIAL_DIR),
                                 entry.created, {**summary, "eval_loss": None, "train_tokens": 0}))
        return entry

    def scan_runs(self) -> None:
        """Register every finished run the app recorded in the runs folder (earlier app sessions)."""
        if not self.runs_dir.is_dir():
            return
        for path in sorted(self.runs_dir.iterdir()):
            if (not path.name.startswith(".") and is_finished_model_dir(path)  # not a staging folder
                    and (path / APP_RUN_FILE).is_file() and f"run/{path.name}" not in self._entries):
                self.add_run(path)

    def remove_run(self, key: str) -> None:
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is not None:
                self._loaded.pop(key, None)
                self._entries.pop(initial_key(entry.name), None)
                self._loaded.pop(initial_key(entry.name), None)
                self.version += 1

    def entries(self, viewer: str | None = None) -> list[ModelEntry]:
        """untrained first, then runs (newest first, each followed by its step 0), then launch-time folders; those
        `viewer` may see."""
        with self._lock:
            entries = [e for e in self._entries.values()
                       if viewer is None or e.summary.get("owner") in (None, viewer)]
        order = {"untrained": 0, "run": 1, "initial": 1, "dir": 2, "pretrained": 3}
        return sorted(entries, key=lambda e: (order[e.kind], -e.created if order[e.kind] == 1 else 0, e.name,
                                              e.kind == "initial", e.key))

    def runs(self, viewer: str | None = None) -> list[ModelEntry]:
        return [e for e in self.entries(viewer) if e.kind == "run"]

    def latest_run(self, viewer: str | None = None) -> ModelEntry | None:
        runs = self.runs(viewer)
        return runs[0] if runs else None

    def resolve(self, key: str, viewer: str | None = None) -> ModelEntry | None:
        """The entry for `key` ('latest': the newest run, 'latest-step-0' that run before training, None while
        there is none; 'untrained': the default corpus's); ModelError if unknown (or another visitor's)."""
        key = (key or "").strip()
        if key == LATEST:
            return self.latest_run(viewer)
        if key == LATEST_INITIAL:
            latest = self.latest_run(viewer)
            if latest is None:
                return None
            key = initial_key(latest.name)
            if key not in self._entries:
                raise ModelError(f"{latest.name} kept no weights of step 0 (it was trained before runs kept them); "
                                 "choose another model")
        if key == UNTRAINED:
            key = untrained_key(None)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:  # a run's bare folder name is accepted too (API convenience)
                entry = self._entries.get(f"run/{key}") or self._entries.get(f"dir/{key}")
        if entry is None or (viewer is not None and entry.summary.get("owner") not in (None, viewer)):
            known = ", ".join(e.key for e in self.entries(viewer))
            raise ModelError(f"unknown model {key[:80]!r}; available: {known}")
        return entry

    def choices(self, lang: str = "en", with_latest: bool = False, viewer: str | None = None) -> list[tuple[str, str]]:
        """(label, key) pairs for a dropdown: the models `viewer` may use."""
        pairs = [(e.label(lang), e.key) for e in self.entries(viewer)]
        if with_latest:
            latest = self.latest_run(viewer)
            if latest:
                pairs[len(self._untrained):len(self._untrained)] = [
                    (msg(lang, "label_latest_initial", name=latest.name), LATEST_INITIAL),
                    (f"{msg(lang, 'label_latest')} ({latest.name})", LATEST)]
            else:
                pairs[len(self._untrained):len(self._untrained)] = [
                    (msg(lang, "label_latest_initial_none"), LATEST_INITIAL), (msg(lang, "label_latest_none"), LATEST)]
        return pairs

    # -- loading ----------------------------------------------------------------------------------------------

    def get(self, key: str, viewer: str | None = None):
        """(entry, model, tokenizer); loads on first use, one load per model even when many threads ask at once."""
        entry = self.resolve(key, viewer)
        if entry is None:
            raise ModelError("no trained model yet: train one first")
        if entry.kind == "untrained":
            return (entry, *self._untrained[entry.key])
        with self._lock:
            if entry.key in self._loaded:
                self._loaded.move_to_end(entry.key)
                return (entry, *self._loaded[entry.key])
            loading = self._loading.setdefault(entry.key, threading.Lock())
        with loading:
            with self._lock:
                if entry.key in self._loaded:
                    return (entry, *self._loaded[entry.key])
            if entry.kind == "pretrained":
                model, tokenizer = load_pretrained_gpt2(entry.name, entry.path)
            else:
                model, tokenizer = load_model_dir(entry.path)
            with self._lock:
                self._loaded[entry.key] = (model, tokenizer)
                while len(self._loaded) > self.cache_size:
                    self._loaded.popitem(last=False)
            return entry, model, tokenizer


__all__ = ["ModelRegistry", "ModelEntry", "ModelError", "UNTRAINED", "LATEST", "LATEST_INITIAL", "untrained_key",
           "load_model_dir", "is_finished_model_dir"]
