"""The checks that turn a visitor's Train form into a job, before anything runs: every setting within the bounds
that the library declares (minigpt.arguments) and within the Space's own stricter limits, the memory the run would
need within the Space's budget, uploads checked and copied into the app's own folder (and Gradio's cached copies
deleted). The job carries one settings object, minigpt.arguments.RunArguments, the same dataclasses as train.py's."""

import re
from dataclasses import dataclass, field
from pathlib import Path

from gradio.utils import get_upload_folder

from minigpt.arguments import (
    Bound,
    DataArguments,
    MiniGPTTrainingArguments,
    ModelArguments,
    OneOf,
    RunArguments,
    bound_of,
)
from minigpt import overfitting
from minigpt.corpus import BUILTIN_CORPORA, builtin_corpus
from space.budget import estimate_training_memory, eval_batch_size, which_setting_to_lower
from space.jobs import TrainingJob
from space.run_files import new_run_name
from space.texts import CORPUS_SHORT, WHAT, app_error, fmt_int, msg, rule_text

UPLOAD_NAME = "upload.txt"  # an uploaded corpus's name on disk and in its model card: it names no content
NEUTRAL_PROMPTS = {"en": "The", "pt": "O"}  # an uploaded corpus's sample prompts: never its own first words

# Byte-level BPE learns merges inside the pieces its pre-tokenizer cuts at spaces (and letter/digit/punctuation
# changes); a piece of hundreds of thousands of characters takes its trainer many minutes (measured: one 1 MB text
# of 300,000-letter "words", about a minute; of 10,000-letter words, 4 s), so a text with a longer run of
# non-space, or of space, characters is refused for BPE before it is queued. Texts are tokenized as they are.
MAX_UNBROKEN_CHARS = 10_000
UNBROKEN = re.compile(r"\S+|\s+")

SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
HUB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


@dataclass
class TrainForm:
    """The Train tab's form: one field per input, named as /train's parameters, with the form's defaults."""

    corpus_source: str = "machado"  # a built-in corpus, "upload" or "hub"
    files: list = field(default_factory=list)
    hub_dataset: str = ""
    preset: str = "tiny"
    tokenizer_type: str = "bpe"
    vocab_size: int = 2048
    length_unit: str = "minutes"  # or "steps", "epochs"
    max_steps: int = 400
    epochs: float = 1.0
    minutes: float = 1.0
    batch_size: int = 16
    learning_rate: float = 3e-3
    block_size: int = 128
    seed: int = 42
    overfit: bool = False  # "see overfitting": train on a small excerpt of the built-in corpus (minigpt.overfitting)
    early_stopping: bool = False  # stop once validation loss has not improved for 3 evaluations; keep the best model


# Each number of the form is a setting of the run: (the dataclass that declares its bound, its field, its type)
FORM_SETTINGS = {
    "vocab_size": (ModelArguments, "vocab_size", int),
    "max_steps": (MiniGPTTrainingArguments, "max_steps", int),
    "epochs": (MiniGPTTrainingArguments, "num_train_epochs", float),
    "minutes": (MiniGPTTrainingArguments, "max_minutes", float),
    "batch_size": (MiniGPTTrainingArguments, "per_device_train_batch_size", int),
    "learning_rate": (MiniGPTTrainingArguments, "learning_rate", float),
    "block_size": (DataArguments, "block_size", int),
    "seed": (MiniGPTTrainingArguments, "seed", int),
}

# The Space's own limits (a shared CPU Space, many visitors): they only narrow the library's bounds.
APP_PRESETS = ("tiny", "small", "base")  # gpt2-sized training is not for a CPU Space
SPACE_LIMITS = {
    "vocab_size": Bound(300, 32768),
    "max_steps": Bound(1, 100_000),
    "num_train_epochs": Bound(0.01, 100),
    "max_minutes": Bound(0.1),  # and at most MINIGPT_APP_MAX_MINUTES (checked_numbers)
    "per_device_train_batch_size": Bound(1, 512),
    "learning_rate": Bound(0, 1, above=True),
    "block_size": Bound(8, 1024),
}
FORM_CHOICES = {
    "corpus_source": OneOf((*BUILTIN_CORPORA, "upload", "hub")),
    "preset": OneOf(APP_PRESETS),
    "tokenizer_type": bound_of(ModelArguments, "tokenizer_type"),
    "length_unit": OneOf(("minutes", "steps", "epochs")),
}


# "see overfitting" sets these values of the form (the visitor sees them, and may change them before starting)
OVERFIT_FORM = {"tokenizer_type": "bpe", "preset": overfitting.MODEL["preset"],
                "vocab_size": overfitting.MODEL["vocab_size"], "block_size": overfitting.DATA["block_size"],
                "length_unit": "steps", "max_steps": overfitting.TRAINING["max_steps"],
                "batch_size": overfitting.TRAINING["per_device_train_batch_size"],
                "learning_rate": overfitting.TRAINING["learning_rate"]}
EARLY_STOPPING_PATIENCE = 3  # evaluations without a better validation loss


def form_bound(name: str, max_minutes: float | None = None) -> Bound:
    """The bound the app checks a number of the form against: the library's, narrowed by the Space's limits (for
    minutes, `max_minutes` too: MINIGPT_APP_MAX_MINUTES)."""
    cls, setting, _ = FORM_SETTINGS[name]
    bound = (bound_of(cls, setting) or Bound()) & SPACE_LIMITS.get(setting, Bound())
    return bound & Bound(high=max_minutes) if name == "minutes" and max_minutes is not None else bound


def sanitize_filename(name: str) -> str:
    """A bare, safe file name: no folders, no leading dots, only letters, digits, '.', '_' and '-'."""
    stem = SAFE_NAME.sub("_", Path(str(name)).name).lstrip("._") or "file"
    return stem[:80]


def _checked_number(lang: str, name: str, value, max_minutes: float | None = None):
    """A number of the form as its setting's type, within form_bound(name); else a visible error."""
    bound, cast = form_bound(name, max_minutes), FORM_SETTINGS[name][2]
    refusal = app_error(lang, msg(lang, "bad_value", what=WHAT[lang][name], rule=rule_text(bound, lang), value=value))
    try:
        number = cast(value)
    except (TypeError, ValueError, OverflowError):
        raise refusal from None
    if (cast is int and float(value) != number) or not bound.allows(number):
        raise refusal
    return number


def _upload_paths(files) -> list[Path]:
    paths = [f if isinstance(f, str) else getattr(f, "name", None) or getattr(f, "path", None) for f in files or []]
    return [Path(p) for p in paths if p]


def forget_uploads(files) -> None:
    """Delete Gradio's cached copies of a request's uploads (accepted or refused): only files inside Gradio's
    upload folder, and their folder when it is left empty."""
    cache = Path(get_upload_folder()).resolve()
    for path in _upload_paths(files):
        path = path.resolve()
        if cache in path.parents:
            path.unlink(missing_ok=True)
            try:
                path.parent.rmdir()
            except OSError:
                pass


def longest_unbroken(text: str) -> int:
    """The longest run of non-space characters, or of space characters, in `text`."""
    return max((match.end() - match.start() for match in UNBROKEN.finditer(text)), default=0)


def collect_uploads(ctx, files, lang: str, job_dir: Path, tokenizer_type: str) -> tuple[Path, str]:
    """Check the uploaded files (.txt, size, UTF-8 text, for BPE no endless "word") and join them into one corpus
    file in the app's own temp folder: returns (that file, the name shown to its visitor). The training never
    reads outside the app's folders; the file is named neutrally (its model card names no content)."""
    paths = _upload_paths(files)
    if not paths:
        raise app_error(lang, msg(lang, "need_files"))
    total = 0
    texts = []
    for source in paths:
        shown = sanitize_filename(source.name)
        if source.suffix.lower() != ".txt":
            raise app_error(lang, msg(lang, "not_txt", name=shown))
        if not source.is_file():  # Gradio's copy outlived its time (space/uploads.py)
            raise app_error(lang, msg(lang, "upload_gone", name=shown))
        size = source.stat().st_size
        total += size
        if size > ctx.max_upload_bytes or total > ctx.max_upload_bytes:
            raise app_error(lang, msg(lang, "too_big", name=shown, size=max(size, total) / 2**20,
                                      limit=ctx.max_upload_mb))
        try:
            text = source.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise app_error(lang, msg(lang, "not_text", name=shown)) from None
        if "\x00" in text:
            raise app_error(lang, msg(lang, "not_text", name=shown))
        if not text.strip():
            raise app_error(lang, msg(lang, "empty_file", name=shown))
        if tokenizer_type == "bpe" and longest_unbroken(text) > MAX_UNBROKEN_CHARS:
            raise app_error(lang, msg(lang, "unbroken", name=shown, limit=fmt_int(MAX_UNBROKEN_CHARS, lang)))
        texts.append(text.strip())
    job_dir.mkdir(parents=True, exist_ok=True)
    target = job_dir / UPLOAD_NAME
    target.write_text("\n\n".join(texts), encoding="utf-8")
    return target, sanitize_filename(paths[0].name) if len(paths) == 1 else f"{len(paths)} files"


def check_memory(ctx, lang: str, preset: str, vocab_size: int, block_size: int, batch_size: int) -> float:
    """Refuse settings whose computed peak memory is over the Space's budget (nothing is allocated here). Returns
    the run's cost (the line's unit for estimating waits): parameters x tokens per step."""
    estimate = estimate_training_memory(preset, vocab_size, block_size, batch_size,
                                        eval_batch_size(batch_size, block_size, vocab_size))
    if estimate.gigabytes > ctx.limits.max_memory_gb:
        setting = which_setting_to_lower(estimate)
        raise app_error(lang, msg(lang, "over_memory", need=estimate.gigabytes, limit=ctx.limits.max_memory_gb,
                                  what=WHAT[lang][setting]))
    return float(estimate.parameters * batch_size * block_size)


def check_choices(lang: str, form: TrainForm) -> None:
    for name, choices in FORM_CHOICES.items():
        value = getattr(form, name)
        if not choices.allows(value):
            raise app_error(lang, msg(lang, "bad_value", what=WHAT[lang][name], rule=" | ".join(choices.choices),
                                      value=value))


def checked_numbers(lang: str, form: TrainForm, max_minutes: float | None = None) -> dict:
    """The form's numbers as the settings they are ({setting: value}); the length in the unit chosen (minutes, at
    most `max_minutes`; steps; or epochs with max_steps -1)."""
    length = {"minutes": "minutes", "steps": "max_steps", "epochs": "epochs"}[form.length_unit]
    names = ["vocab_size", length, "batch_size", "learning_rate", "block_size", "seed"]
    numbers = {FORM_SETTINGS[name][1]: _checked_number(lang, name, getattr(form, name), max_minutes)
               for name in names}
    if form.length_unit == "epochs":
        numbers["max_steps"] = -1
    return numbers


def prepare_job(ctx, lang: str, owner: str, form: TrainForm, client: str = "local") -> TrainingJob:
    """Check every input (gr.Error with what to change) and build the job; nothing runs yet."""
    check_choices(lang, form)
    numbers = checked_numbers(lang, form, ctx.limits.max_minutes)
    batch_size, block_size, vocab_size = (numbers["per_device_train_batch_size"], numbers["block_size"],
                                          numbers["vocab_size"])
    cost = check_memory(ctx, lang, form.preset, vocab_size, block_size, batch_size)

    run_name = new_run_name(ctx, form.preset, form.tokenizer_type)
    job_dir = ctx.tmp_dir / "uploads" / run_name
    data = {"block_size": block_size}
    corpus = f"{form.corpus_source} (built-in)"
    if form.corpus_source in BUILTIN_CORPORA:
        data["builtin_corpus"] = form.corpus_source
    elif form.corpus_source == "upload":
        train_file, corpus = collect_uploads(ctx, form.files, lang, job_dir, form.tokenizer_type)
        data.update(train_file=str(train_file), sample_prompts=NEUTRAL_PROMPTS[lang])
    elif form.corpus_source == "hub":
        name = (form.hub_dataset or "").strip()
        if not name:
            raise app_error(lang, msg(lang, "need_hub"))
        # A Hub name only: never a path (load_dataset would read a local folder or file).
        if len(name) > 200 or not HUB_NAME.match(name) or ".." in name or Path(name).exists():
            raise app_error(lang, msg(lang, "bad_hub", name=name[:200]))
        data.update(dataset_name=name, max_dataset_mb=ctx.limits.max_hub_mb)  # refused before any download
        corpus = name
    evaluations = 8  # fractions of the run: 8 evaluations, ~50 points
    if form.overfit:
        if form.corpus_source not in BUILTIN_CORPORA:
            raise app_error(lang, msg(lang, "overfit_builtin_only"))
        train_file, validation_file = overfitting.excerpt_files(form.corpus_source, job_dir)
        data = {"block_size": block_size, "train_file": str(train_file), "validation_file": str(validation_file),
                "sample_prompts": "|".join(builtin_corpus(form.corpus_source).prompts)}
        corpus = msg(lang, "excerpt_of", corpus=CORPUS_SHORT[lang][form.corpus_source])
        evaluations = overfitting.EVALUATIONS
    # the app keeps the final model only (Stop saves it too); early stopping saves at each evaluation, to load the
    # best one back at the end
    stopping = {"early_stopping_patience": EARLY_STOPPING_PATIENCE, "save_total_limit": 1} if form.early_stopping \
        else {"save_strategy": "no"}
    training = dict(
        output_dir=str(ctx.runs_dir / run_name), max_steps=numbers.get("max_steps", -1),
        num_train_epochs=numbers.get("num_train_epochs", 1.0), max_minutes=numbers.get("max_minutes"),
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=eval_batch_size(batch_size, block_size, vocab_size),
        learning_rate=numbers["learning_rate"], seed=numbers["seed"],
        eval_steps=1 / evaluations, logging_steps=0.02, report_to="none", dataloader_num_workers=0, **stopping,
    )
    arguments = RunArguments(
        ModelArguments(preset=form.preset, tokenizer_type=form.tokenizer_type, vocab_size=vocab_size),
        DataArguments(**data), training)
    return TrainingJob(run_name, owner, arguments, corpus, cost=cost, cleanup=job_dir,
                       private_corpus=form.corpus_source == "upload", client=client)
