"""The checks that turn a visitor's Train form into a job, before anything runs: every setting in range, the
memory the run would need within the Space's budget, uploads checked and copied into the app's own folder (and
Gradio's cached copies deleted)."""

import re
from pathlib import Path

from gradio.utils import get_upload_folder

from minigpt.corpus import BUILTIN_CORPORA
from minigpt.training import DataArguments, ModelArguments
from space.budget import estimate_training_memory, eval_batch_size, which_setting_to_lower
from space.jobs import TrainingJob
from space.run_files import new_run_name
from space.texts import WHAT, app_error, fmt_int, msg

APP_PRESETS = ("tiny", "small", "base")  # gpt2-sized training is not for a CPU Space
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


def sanitize_filename(name: str) -> str:
    """A bare, safe file name: no folders, no leading dots, only letters, digits, '.', '_' and '-'."""
    stem = SAFE_NAME.sub("_", Path(str(name)).name).lstrip("._") or "file"
    return stem[:80]


def _check_number(lang, name, value, rule, ok, cast=float):
    try:
        number = cast(value)
    except (TypeError, ValueError):
        raise app_error(lang, msg(lang, "bad_value", what=WHAT[lang][name], rule=rule, value=value)) from None
    if cast is int and float(value) != number:
        raise app_error(lang, msg(lang, "bad_value", what=WHAT[lang][name], rule=rule, value=value))
    if not ok(number):
        raise app_error(lang, msg(lang, "bad_value", what=WHAT[lang][name], rule=rule, value=value))
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


def check_memory(ctx, lang: str, preset: str, vocab_size: int, block_size: int, batch_size: int) -> dict:
    """Refuse settings whose computed peak memory is over the Space's budget (nothing is allocated here)."""
    estimate = estimate_training_memory(preset, vocab_size, block_size, batch_size,
                                        eval_batch_size(batch_size, block_size, vocab_size))
    if estimate.gigabytes > ctx.limits.max_memory_gb:
        setting = which_setting_to_lower(estimate)
        raise app_error(lang, msg(lang, "over_memory", need=estimate.gigabytes, limit=ctx.limits.max_memory_gb,
                                  what=WHAT[lang][setting]))
    return {"memory_gb": round(estimate.gigabytes, 2), "cost": float(estimate.parameters * batch_size * block_size)}


def _check_choices(lang, corpus_source, preset, tokenizer_type, length_unit) -> None:
    for name, value, allowed in (("corpus_source", corpus_source, (*BUILTIN_CORPORA, "upload", "hub")),
                                 ("preset", preset, APP_PRESETS), ("tokenizer_type", tokenizer_type, ("bpe", "char")),
                                 ("length_unit", length_unit, ("steps", "epochs"))):
        if value not in allowed:
            raise app_error(lang, msg(lang, "bad_value", what=WHAT[lang][name], rule=" | ".join(allowed), value=value))


def _check_numbers(lang, vocab_size, length_unit, max_steps, epochs, batch_size, learning_rate, block_size, seed):
    def between(low, high) -> str:
        return msg(lang, "between", low=low, high=high)

    vocab_size = _check_number(lang, "vocab_size", vocab_size, between(300, 32768), lambda v: 300 <= v <= 32768, int)
    if length_unit == "steps":
        steps = _check_number(lang, "max_steps", max_steps, between(1, 100000), lambda v: 1 <= v <= 100_000, int)
        epochs = 1.0
    else:
        steps = -1
        epochs = _check_number(lang, "epochs", epochs, between(0.01, 100), lambda v: 0.01 <= v <= 100)
    batch_size = _check_number(lang, "batch_size", batch_size, between(1, 512), lambda v: 1 <= v <= 512, int)
    learning_rate = _check_number(lang, "learning_rate", learning_rate, "> 0, <= 1", lambda v: 0 < v <= 1)
    block_size = _check_number(lang, "block_size", block_size, between(8, 1024), lambda v: 8 <= v <= 1024, int)
    seed = _check_number(lang, "seed", seed, ">= 0", lambda v: 0 <= v < 2**32, int)
    return vocab_size, steps, epochs, batch_size, learning_rate, block_size, seed


def prepare_job(ctx, lang: str, owner: str, corpus_source, files, hub_dataset, preset, tokenizer_type, vocab_size,
                length_unit, max_steps, epochs, batch_size, learning_rate, block_size, seed,
                client: str = "local") -> TrainingJob:
    """Check every input (gr.Error with what to change) and build the job; nothing runs yet."""
    _check_choices(lang, corpus_source, preset, tokenizer_type, length_unit)
    vocab_size, steps, epochs, batch_size, learning_rate, block_size, seed = _check_numbers(
        lang, vocab_size, length_unit, max_steps, epochs, batch_size, learning_rate, block_size, seed)
    budget = check_memory(ctx, lang, preset, vocab_size, block_size, batch_size)

    run_name = new_run_name(ctx, preset, tokenizer_type)
    job_dir = ctx.tmp_dir / "uploads" / run_name
    data = {"block_size": block_size, "preprocessing_num_workers": None}
    corpus = f"{corpus_source} (built-in)"
    if corpus_source in BUILTIN_CORPORA:
        data["builtin_corpus"] = corpus_source
    elif corpus_source == "upload":
        train_file, corpus = collect_uploads(ctx, files, lang, job_dir, tokenizer_type)
        data.update(train_file=str(train_file), sample_prompts=NEUTRAL_PROMPTS[lang])
    elif corpus_source == "hub":
        name = (hub_dataset or "").strip()
        if not name:
            raise app_error(lang, msg(lang, "need_hub"))
        # A Hub name only: never a path (load_dataset would read a local folder or file).
        if len(name) > 200 or not HUB_NAME.match(name) or ".." in name or Path(name).exists():
            raise app_error(lang, msg(lang, "bad_hub", name=name[:200]))
        data.update(dataset_name=name, max_dataset_mb=ctx.limits.max_hub_mb)  # refused before any download
        corpus = name
    output_dir = ctx.runs_dir / run_name
    # TrainingArguments are built in the training process: creating them touches accelerate's process state.
    training_kwargs = dict(
        output_dir=str(output_dir), max_steps=steps, num_train_epochs=epochs,
        per_device_train_batch_size=batch_size, per_device_eval_batch_size=eval_batch_size(batch_size, block_size, vocab_size),
        learning_rate=learning_rate, seed=seed,
        eval_steps=0.125, logging_steps=0.02,  # fractions of the run: 8 evaluations, ~50 points
        save_strategy="no",  # the app keeps the final model only (Stop saves it too)
        report_to="none", dataloader_num_workers=0,
    )
    settings = {"corpus": corpus, "preset": preset, "tokenizer": tokenizer_type, "vocab_size": vocab_size,
                "max_steps": steps, "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                "block_size": block_size, "seed": seed, **budget}
    return TrainingJob(run_name, output_dir, owner, settings,
                       ModelArguments(preset=preset, tokenizer_type=tokenizer_type, vocab_size=vocab_size),
                       DataArguments(**data), training_kwargs, cleanup=job_dir,
                       private_corpus=corpus_source == "upload", client=client)
