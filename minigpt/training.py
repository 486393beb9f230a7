"""The pre-training pipeline, one path for the CLI, the app, the tests and the benchmarks:

    corpus -> DatasetDict(train, validation) -> tokenizer (train split) -> block_size chunks
      -> MiniGPTTrainer (HF Trainer) with monitoring callbacks -> checkpoints (resumable)
      -> save_pretrained(output_dir) + tokenizer + generation config + history + plot + model card -> Hub (optional)

The run's settings are the dataclasses of minigpt.arguments (HfArgumentParser's, named as in transformers'
run_clm.py), checked when they are made.
"""

import contextlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
import torch
from transformers import (
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    EarlyStoppingCallback,
    GenerationConfig,
    TrainerCallback,
    TrainerState,
    set_seed,
)

from configuration_minigpt import PRESETS
from minigpt.arguments import (
    DataArguments,
    MiniGPTTrainingArguments,
    ModelArguments,
    check_arguments,
    corpus_fingerprints,
    model_config,
    run_settings,
)
from minigpt.blocks import check_batch_fits, check_text_fits, stream_blocks, tokenize_and_group
from minigpt.corpus import builtin_corpus, describe_source, load_text_datasets
from minigpt.data_progress import ProgressHook, datasets_progress_bars_off, text_bytes
from minigpt.errors import Diverged, SetupError
from minigpt.loading import load_pretrained
from minigpt.log_lines import close_training_bar
from minigpt.model_card import write_model_card
from minigpt.monitoring import (
    DivergenceCallback,
    MiniGPTTrainer,
    OverfittingCallback,
    SampleTextCallback,
    StopOnEventCallback,
    logged_samples,
    perplexity,
    write_history,
    write_samples,
)
from minigpt.optimizers import muon_optimizer_cls_and_kwargs
from minigpt.portable import make_readable, save_tokenizer
from minigpt.precision import SpeedPlan, peak_flops, plan_training, precision_of, set_tf32_matmul
from minigpt.ranks import main_first
from minigpt.run_folder import (
    INITIAL_DIR,
    RUN_SETTINGS_FILE,
    TIME_PLAN_KEY,
    OutputDirLock,
    RunPlan,
    RunSettingsCallback,
    UnwritableFolder,
    disk_error_message,
    drop_checkpoints_from,
    finish_interrupted_swap,
    finished_settings,
    full_disk_is_one_line,
    fullest_disk,
    os_error_behind,
    plan_run,
    remove_checkpoints,
    staging_dir,
    swap_in,
)
from minigpt.scoring import blocks_bits_per_byte
from minigpt.teaching import default_sampling
from minigpt.time_plan import STEPS_UPPER_BOUND
from minigpt.tokenizer_training import train_tokenizer
from modeling_minigpt import MiniGPTForCausalLM

logger = logging.getLogger("minigpt")


@dataclass
class RunResult:
    output_dir: str
    metrics: dict
    samples: list[dict]
    resumed_from: str | None
    already_finished: bool = False  # output_dir held this very run, finished: nothing was done


# ----------------------------------------------------------------------------------------------------------------
# Model and tokenizer


def build_model(model_args: ModelArguments, tokenizer, block_size: int, seed: int) -> MiniGPTForCausalLM:
    """A fresh MiniGPT sized by the preset, the overrides, the tokenizer's vocabulary and the block size. Its
    initial weights come from `seed` alone (the global RNG is left as it was): the same call makes the same model,
    which is how a resumed run still saves its step-0 weights (save_run)."""
    config = model_config(model_args, block_size, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                          eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    kwargs = {"attn_implementation": model_args.attn_implementation} if model_args.attn_implementation else {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MiniGPTForCausalLM._from_config(config, **kwargs)


def sampling_generation_config(model, tokenizer) -> GenerationConfig:
    """What generate() does by default with a saved model: sampling that reads well for a small GPT, with the
    defaults of minigpt.teaching.DecodingSettings (minigpt.teaching.default_sampling)."""
    return GenerationConfig(
        **default_sampling(),
        max_new_tokens=min(200, model.config.max_position_embeddings // 2),  # room for a prompt of half the context
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )


def default_prompts(data_args: DataArguments, raw: datasets.DatasetDict) -> list[str]:
    if data_args.sample_prompts:
        return [p for p in data_args.sample_prompts.split("|")]
    if not (data_args.train_file or data_args.dataset_name):
        return list(builtin_corpus(data_args.builtin_corpus).prompts)
    first_line = raw["validation"][0]["text"].strip().splitlines()[0]
    return [" ".join(first_line.split()[:3])[:24]]


# ----------------------------------------------------------------------------------------------------------------
# The run

EVAL_ONLY_FILE = "eval_only_results.json"


def run_training(
    model_args: ModelArguments,
    data_args: DataArguments,
    args: MiniGPTTrainingArguments,
    callbacks: Sequence[TrainerCallback] = (),
    stop_event: threading.Event | None = None,
    on_sample: Callable[[dict], None] | None = None,
    on_data_progress: ProgressHook | None = None,
    started_at: float | None = None,
) -> RunResult:
    """Train (or only evaluate) and write the finished model to args.output_dir. Raises SetupError/CorpusError
    on bad input before anything is written; the output folder is locked while the run lasts. Under torchrun or
    accelerate, the main process decides and writes, the other ranks follow (minigpt.ranks) and raise
    FailedElsewhere where another rank failed.

    callbacks: extra TrainerCallbacks (the app's progress reporting); stop_event: set it to end training at the
    next step and still save a usable model; on_sample: called with each evaluation's sample text;
    on_data_progress: called with a minigpt.data_progress.DataProgress (MB done, MB/s) while the tokenizer is
    trained and the corpus tokenized; started_at: when (time.time()) the budget of --max_minutes began (train.py:
    its process's start), else now."""
    started_at = time.time() if started_at is None else started_at
    settings = run_settings(model_args, data_args, args)
    made_here = not os.path.exists(args.output_dir)
    with contextlib.ExitStack() as folder:  # the main process's lock on output_dir, held until the end
        plan, finished_metrics = main_first(
            args, lambda: decide(folder, model_args, data_args, args, settings), share=True)
        if plan.finished:  # the caller says so (train.py prints "already finished")
            return RunResult(args.output_dir, finished_metrics, [], None, already_finished=True)
        try:
            return _run(model_args, data_args, args, settings, plan, list(callbacks), stop_event, on_sample,
                        on_data_progress, started_at)
        except Exception as error:  # a full disk, a read-only folder: one line, not a traceback
            cause = os_error_behind(error)  # datasets wraps the OSError of a full cache in its own error
            if cause is None:
                raise
            corpus_bytes = sum(file["bytes"] for file in settings["corpus_files"].values())
            where = cause.filename or fullest_disk(args.output_dir, datasets.config.HF_DATASETS_CACHE)
            message = disk_error_message(cause, where, needed=f"the data cache takes about the corpus's size, "
                                                              f"{corpus_bytes / 2**20:.0f} MiB" if corpus_bytes else "")
            if message is None:
                raise
            raise SetupError(message) from None
        finally:
            if made_here and args.process_index == 0:  # a failed run leaves no empty folder (the Trainer makes it)
                with contextlib.suppress(OSError):
                    os.rmdir(args.output_dir)  # only when empty


def decide(folder: contextlib.ExitStack, model_args, data_args, args, settings: dict) -> tuple[RunPlan, dict | None]:
    """On the main process only (the other ranks receive its plan): check the arguments, lock output_dir (the lock
    joins `folder`) and decide what the run does with it. Returns the plan, and the finished run's metrics."""
    check_arguments(model_args, data_args, args)
    same_finished_run = args.do_train and not args.overwrite_output_dir
    try:
        folder.enter_context(OutputDirLock(args.output_dir))
    except UnwritableFolder:
        # a run finished there needs nothing written: "already finished" (read without the lock: the final
        # folder is swapped in by one rename, so this reads the old folder or the new one)
        if not (same_finished_run and finished_settings(args.output_dir) == settings):
            raise
        plan = RunPlan(finished=True)
    else:
        if not args.do_train:
            return RunPlan(), None
        plan = plan_run(args.output_dir, settings, overwrite=args.overwrite_output_dir,
                        resume_from_checkpoint=args.resume_from_checkpoint)
    metrics = json.loads((Path(args.output_dir) / "all_results.json").read_text()) if plan.finished else None
    return plan, metrics


def load_model_and_tokenizer(model_args: ModelArguments, data_args: DataArguments, args: MiniGPTTrainingArguments,
                             model_source: str | None, raw: datasets.DatasetDict, **tokenizer_kwargs):
    """From the checkpoint being resumed, a saved model, or new. Returns (model, tokenizer, block_size). The main
    process goes first (a download lands once in the cache); the tokenizer it loads or trains (or finds in the
    cache: tokenizer_kwargs) is handed to the other ranks, so that every rank has the same one, trained once."""
    model = None
    if model_source:
        model = main_first(args, lambda: load_pretrained(model_source, model_args.attn_implementation))
    tokenizer = main_first(args, lambda: load_tokenizer(model_args, data_args, model_source, raw, **tokenizer_kwargs),
                           share=True)
    model, block_size = main_first(args, lambda: fit_model(model, tokenizer, model_args, data_args, args.seed))
    return model, tokenizer, block_size


def load_tokenizer(model_args: ModelArguments, data_args: DataArguments, model_source: str | None,
                   raw: datasets.DatasetDict, cache_dir: str | None = None, show_progress: bool = False,
                   on_progress: ProgressHook | None = None):
    """The saved tokenizer of --tokenizer_name or the model, or one trained on raw["train"] (or loaded from
    `cache_dir` where the same corpus and settings trained it before)."""
    tokenizer_source = model_args.tokenizer_name or model_source
    if tokenizer_source:
        try:
            tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
        except (OSError, ValueError) as error:
            raise SetupError(f"no tokenizer in {tokenizer_source!r} ({str(error).splitlines()[0]}); "
                             "pass --tokenizer_name of a saved tokenizer") from None
    else:
        tokenizer = train_tokenizer(raw["train"], kind=model_args.tokenizer_type, vocab_size=model_args.vocab_size,
                                    sample_mb=data_args.tokenizer_sample_mb, cache_dir=cache_dir,
                                    show_progress=show_progress, on_progress=on_progress)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def fit_model(model, tokenizer, model_args: ModelArguments, data_args: DataArguments, seed: int):
    """The loaded model, or a new one sized for the tokenizer (initial weights from `seed`); checked against
    block_size. Returns (model, block_size)."""
    if model is not None:
        block_size = data_args.block_size or model.config.max_position_embeddings
    else:
        block_size = data_args.block_size or PRESETS[model_args.preset]["max_position_embeddings"]
        model = build_model(model_args, tokenizer, block_size, seed)
    if block_size > model.config.max_position_embeddings:
        raise SetupError(f"--block_size {block_size} exceeds the model's context of "
                         f"{model.config.max_position_embeddings}; lower --block_size")
    if len(tokenizer) > model.config.vocab_size:
        raise SetupError(f"the tokenizer has {len(tokenizer)} tokens but the model only {model.config.vocab_size}; "
                         "use the model's own tokenizer")
    return model, block_size


def prepare_blocks(raw, tokenizer, block_size: int, data_args: DataArguments, cache_dir: str | None = None,
                   show_progress: bool = False, on_progress: ProgressHook | None = None) -> dict:
    """{"train", "validation"}: blocks of token ids, from the cache when this corpus, tokenizer and block size were
    tokenized before; with --streaming, train is made on the fly. Validation keeps its first --max_eval_samples."""
    progress = {"show_progress": show_progress, "on_progress": on_progress}
    if data_args.streaming:
        validation = datasets.DatasetDict(validation=raw["validation"])
        blocks = {"train": stream_blocks(raw["train"], tokenizer, block_size),
                  **tokenize_and_group(validation, tokenizer, block_size, **progress)}
    else:
        blocks = dict(tokenize_and_group(raw, tokenizer, block_size, cache_dir=cache_dir,
                                         overwrite_cache=data_args.overwrite_cache,
                                         num_proc=data_args.preprocessing_num_workers, **progress))
    if data_args.max_eval_samples is not None and len(blocks["validation"]) > data_args.max_eval_samples:
        blocks["validation"] = blocks["validation"].select(range(data_args.max_eval_samples))
    return blocks


@dataclass
class RunStart:
    """What a run starts from: the corpus's splits, the model (new, saved or resumed), its tokenizer, the block
    size and the blocks of token ids ({"train", "validation"})."""

    raw: datasets.DatasetDict
    model: MiniGPTForCausalLM
    tokenizer: object
    block_size: int
    chunks: dict


def prepare_run(model_args: ModelArguments, data_args: DataArguments, args: MiniGPTTrainingArguments,
                model_source: str | None = None, corpus_files: dict | None = None,
                on_data_progress: ProgressHook | None = None) -> RunStart:
    """The corpus read and split, the tokenizer trained (or loaded), the model made (or loaded from
    `model_source`), the blocks tokenized: the same work for a run and for anything that looks at its start
    (minigpt.one_step). corpus_files: the run's recorded fingerprints of its files, checked once they are read."""
    set_seed(args.seed)
    show = not args.disable_tqdm
    cache_dir = os.path.join(datasets.config.HF_DATASETS_CACHE, "minigpt")
    with contextlib.nullcontext() if show else datasets_progress_bars_off():
        raw = main_first(args, lambda: load_text_datasets(  # the main process downloads, the others read the cache
            train_file=data_args.train_file, validation_file=data_args.validation_file,
            dataset_name=data_args.dataset_name, dataset_config_name=data_args.dataset_config_name,
            text_column=data_args.text_column, validation_split_percentage=data_args.validation_split_percentage,
            seed=args.seed, max_train_samples=data_args.max_train_samples,
            builtin_corpus_name=data_args.builtin_corpus, max_dataset_mb=data_args.max_dataset_mb,
            streaming=data_args.streaming, stream_head_mb=data_args.tokenizer_sample_mb,
        ))
        if corpus_files is not None and corpus_fingerprints(data_args) != corpus_files:
            raise SetupError("a corpus file changed while the run was starting; run the command again")
        known_block = data_args.block_size or (None if model_source else
                                               PRESETS[model_args.preset]["max_position_embeddings"])
        if known_block:  # a loaded model's own context is known once it is loaded (fit_model checks it)
            check_text_fits(raw, known_block, args.per_device_train_batch_size if args.do_train else 0)
        progress = {"show_progress": show, "on_progress": on_data_progress}
        model, tokenizer, block_size = load_model_and_tokenizer(
            model_args, data_args, args, model_source, raw, cache_dir=cache_dir, **progress)
        chunks = main_first(args, lambda: prepare_blocks(  # the others load what the main process cached
            raw, tokenizer, block_size, data_args, cache_dir=cache_dir, **progress))
        if args.do_train and not data_args.streaming:
            check_batch_fits(len(chunks["train"]), args.per_device_train_batch_size)
    return RunStart(raw, model, tokenizer, block_size, chunks)


def _run(model_args, data_args, args, settings, plan, callbacks, stop_event, on_sample, on_data_progress,
         started_at) -> RunResult:
    if plan.resume_from:
        logger.info("Resuming from %s", plan.resume_from)
    start = prepare_run(model_args, data_args, args, plan.resume_from or model_args.model_name_or_path,
                        settings["corpus_files"], on_data_progress)
    raw, model, tokenizer, block_size, chunks = (start.raw, start.model, start.tokenizer, start.block_size,
                                                 start.chunks)

    model.generation_config = sampling_generation_config(model, tokenizer)
    prompts = default_prompts(data_args, raw)
    samples = SampleTextCallback(tokenizer, prompts, seed=args.seed, on_sample=on_sample)
    callbacks = [RunSettingsCallback(settings), DivergenceCallback(), samples, OverfittingCallback(), *callbacks]
    if args.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=args.early_stopping_patience))
    if stop_event is not None:
        callbacks.append(StopOnEventCallback(stop_event))

    deadline = started_at + 60 * args.max_minutes if args.max_minutes is not None else None
    trainer = build_trainer(model, tokenizer, args, chunks["train"] if args.do_train else None, chunks["validation"],
                            block_size, callbacks, deadline=deadline)

    with full_disk_is_one_line(args.output_dir, checkpoint_bytes(model)):  # checkpoints and the final save
        metrics = {}
        if args.do_train:
            if plan.fresh and trainer.is_world_process_zero():
                remove_checkpoints(args.output_dir)
            metrics.update(train(trainer, plan.resume_from))
        if args.do_eval:
            eval_metrics = final_evaluation(trainer)
            eval_metrics["eval_perplexity"] = perplexity(eval_metrics["eval_loss"])
            metrics.update(eval_metrics)
            metrics["eval_bits_per_byte"] = blocks_bits_per_byte(
                trainer.accelerator.unwrap_model(trainer.model), chunks["validation"], tokenizer, block_size,
                args.per_device_eval_batch_size)

        if trainer.is_world_process_zero():
            source = describe_source(data_args.train_file, data_args.validation_file, data_args.dataset_name,
                                     data_args.dataset_config_name, data_args.builtin_corpus, settings["corpus_files"])
            source += _how_the_data_was_read(model_args, data_args, raw)
            if not args.do_train:
                write_eval_only(args.output_dir, metrics, model=model_args.model_name_or_path, corpus=source)
                return RunResult(args.output_dir, metrics, samples.samples, None)
            repo_id = args.hub_model_id or Path(args.output_dir).name
            # the card shows the run's settings as recorded, and what the Trainer made of them
            used = {"block_size": block_size, "precision": precision_of(trainer.args),
                    "lr_scheduler_kwargs": trainer.scheduler_kwargs}
            if trainer.time_plan is not None:  # what the budget bought: a record beside the settings, not a setting
                used["time_plan"] = trainer.time_plan.record(trainer.tokens_per_step)
                settings = {**settings, TIME_PLAN_KEY: used["time_plan"]}
            card = {"name": repo_id if args.push_to_hub else Path(args.output_dir).name, "used": used, "source": source,
                    "tokenizer": tokenizer, "prompt": prompts[0]}
            # the weights before training, rebuilt from the seed (also for a resumed run); a run that started from
            # saved weights has them where it started
            initial = None if model_args.model_name_or_path else \
                (lambda: build_model(model_args, tokenizer, block_size, args.seed))
            save_run(trainer, tokenizer, args.output_dir, settings, metrics, card, initial)
            if trainer.time_plan is not None:
                logger.info("time plan: saved after %.1f s of the %.1f s budget", time.time() - started_at,
                            60 * args.max_minutes)
            if args.push_to_hub:
                from minigpt.hub import push_folder, push_gpt2

                (push_gpt2 if args.push_as_gpt2 else push_folder)(args.output_dir, repo_id, args.hub_token)
        return RunResult(args.output_dir, metrics, samples.samples, plan.resume_from)


def checkpoint_bytes(model) -> int:
    """About what one checkpoint takes on disk: the weights, and AdamW's two moments as large as them."""
    return 3 * sum(p.numel() * p.element_size() for p in model.parameters())


def _how_the_data_was_read(model_args: ModelArguments, data_args: DataArguments, raw) -> str:
    """What the model card adds to the corpus's name: streamed, and the part of it a trained tokenizer saw."""
    streamed = "; streamed" if data_args.streaming else ""
    trained_here = not (model_args.tokenizer_name or model_args.model_name_or_path)
    sample = data_args.tokenizer_sample_mb
    if trained_here and (data_args.streaming or text_bytes(raw["train"]) > sample * 1e6):
        return f"{streamed}; the tokenizer trained on its first {sample:g} MB"
    return streamed


def train(trainer: MiniGPTTrainer, resume_from: str | None) -> dict:
    """trainer.train(), except for a checkpoint that is already at its last step (a run killed while saving its
    final folder): resuming that would train one step more, so its state is only read back."""
    if resume_from:
        state = TrainerState.load_from_json(os.path.join(resume_from, "trainer_state.json"))
        if state.max_steps and state.global_step >= state.max_steps:
            trainer.state = state
            return {"train_tokens": state.num_input_tokens_seen}
    try:
        result = trainer.train(resume_from_checkpoint=resume_from)
    except BaseException as error:
        close_training_bar(trainer)  # the error line starts a line of its own
        if not isinstance(error, Diverged):
            raise
        kept = drop_checkpoints_from(trainer.args.output_dir, error.weights_step) \
            if trainer.is_world_process_zero() else None
        resume = f"; {Path(kept).name}, from before, is kept" if kept else ""
        raise SetupError(f"{error}{resume}") from None
    metrics = {**result.metrics, "train_tokens": trainer.state.num_input_tokens_seen}
    if trainer.time_plan is not None:  # the Trainer counts the samples of its own max_steps, not those trained
        samples = metrics["train_tokens"] / trainer.block_size
        metrics["train_samples_per_second"] = round(samples / metrics["train_runtime"], 3)
    return metrics


def final_evaluation(trainer: MiniGPTTrainer) -> dict:
    """The evaluation of the model as it is saved: the Trainer's own at the last step of training (it evaluates
    there by itself; the same weights again would be a third of a short run's evaluating, for nothing), else a new
    one (evaluation only, a stopped run, the best model loaded back)."""
    state = trainer.state
    last = next((entry for entry in reversed(state.log_history) if "eval_loss" in entry), None)
    if last is None or last.get("step") != state.global_step or state.global_step == 0 or \
            trainer.args.load_best_model_at_end:
        return trainer.evaluate()
    return {key: value for key, value in last.items() if key != "step"}


class FullBlockCollator(DataCollatorForLanguageModeling):
    """Every block is full (no padding), so no attention mask: attention takes its plain causal kernel (flash
    attention on a GPU) without checking a mask of ones, also under torch.compile."""

    def __call__(self, features, return_tensors=None):
        batch = super().__call__(features, return_tensors)
        batch.pop("attention_mask", None)
        return batch


def build_trainer(model, tokenizer, args: MiniGPTTrainingArguments, train_dataset, eval_dataset, block_size: int,
                  callbacks=(), deadline: float | None = None) -> MiniGPTTrainer:
    """The Trainer every MiniGPT run uses (also for GPT-2 in the benchmarks): labels = input_ids, shifted inside
    the model's loss; MFU measured against this device's matmul peak. It gets its own copy of `args`, made with the
    speed plan for this model and without pushing (the Trainer would push every checkpoint, and a pickle:
    run_training pushes the finished folder once). deadline: where args.max_minutes is set, when (time.time()) its
    budget ends (default: that many minutes from now)."""
    plan = plan_training(args, model.config, block_size)
    trainer_args = trainer_arguments(args, plan)
    if trainer_args.device.type == "cuda":
        set_tf32_matmul(plan.precision == "tf32")
    # MFU only on a GPU, measured (about a second of matmuls) only by the processes whose log is shown (MFU is
    # per device): a GPU's matmul peak is a stable measurement, a CPU's is not. A CPU's cores are shared with
    # whatever else runs, its peak depends on the threads and the load of the moment it was measured, and a peak
    # measured on a busy machine made "mfu 0.94" at 675 tokens/s. The benchmarks measure CPU MFU under control.
    on_gpu = trainer_args.device.type == "cuda"
    peak = peak_flops(trainer_args.device.type, plan.precision) if args.should_log and on_gpu else None
    return MiniGPTTrainer(
        model=model,
        args=trainer_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        data_collator=FullBlockCollator(tokenizer, mlm=False),
        callbacks=list(callbacks),
        block_size=block_size,
        peak_flops=peak,
        optimizer_cls_and_kwargs=muon_optimizer_cls_and_kwargs(args) if args.muon else None,
        deadline=deadline,
    )


def trainer_arguments(args: MiniGPTTrainingArguments, plan: SpeedPlan) -> MiniGPTTrainingArguments:
    """The Trainer's copy of `args`: the speed plan's precision and compilation, and no pushing; with
    --max_minutes, steps enough that the time plan (minigpt.time_plan) ends training, not the Trainer."""
    steps = {"max_steps": STEPS_UPPER_BOUND} if args.max_minutes is not None else {}
    return args.replaced(precision=plan.precision, compile="true" if plan.torch_compile else "false",
                         push_to_hub=False, **steps)


# ----------------------------------------------------------------------------------------------------------------
# What a run writes


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=4, sort_keys=True) + "\n")


def write_results(metrics: dict, folder: Path) -> None:
    """train_results.json, eval_results.json and both in all_results.json, as Trainer.save_metrics names and writes
    them. (Not save_metrics itself: it writes into args.output_dir and merges with the all_results.json it finds
    there, where the finished folder is built beside it and must hold this run's results only.)"""
    for split in ("train", "eval"):
        split_metrics = {k: v for k, v in metrics.items() if k.startswith("eval_") == (split == "eval")}
        if split_metrics:
            _write_json(folder / f"{split}_results.json", split_metrics)
    _write_json(folder / "all_results.json", metrics)


def write_eval_only(output_dir: str, metrics: dict, *, model: str, corpus: str) -> None:
    """Evaluation only writes its own file, next to (never over) the records of a training run."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{EVAL_ONLY_FILE}.tmp"
    _write_json(tmp, {"model": model, "corpus": corpus, **metrics})
    tmp.replace(out / EVAL_ONLY_FILE)


def save_run(trainer, tokenizer, output_dir: str, settings: dict, metrics: dict, card: dict,
             initial_model: Callable[[], MiniGPTForCausalLM] | None = None) -> None:
    """The finished folder (weights, config, tokenizer, generation config, history, plot, samples, results, run
    settings, model card), built beside output_dir and swapped in whole: see minigpt.run_folder. initial_model:
    makes the model as it was before its first step, saved with the tokenizer in INITIAL_DIR (step-0/), the
    chapter's "before" beside the trained model."""
    staging = staging_dir(output_dir)
    try:
        model = trainer.accelerator.unwrap_model(trainer.model)
        model.config.use_cache = True  # the Trainer turns the KV cache off for training; generate() wants it
        model.save_pretrained(staging)
        save_tokenizer(tokenizer, staging)
        if initial_model is not None:
            initial = initial_model()
            initial.generation_config = model.generation_config
            initial.save_pretrained(staging / INITIAL_DIR)
            save_tokenizer(tokenizer, staging / INITIAL_DIR)
        log_history = trainer.state.log_history
        write_history(log_history, staging)
        if logged_samples(log_history):
            write_samples(logged_samples(log_history), staging)
        write_results(metrics, staging)
        (staging / RUN_SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n")
        write_model_card(staging, model=model, settings=settings, metrics=metrics, log_history=log_history, **card)
        make_readable(staging)
        swap_in(staging, output_dir)
    except BaseException:
        with contextlib.suppress(OSError):  # an exception inside swap_in: its checkpoints still go where they belong
            finish_interrupted_swap(output_dir)
        shutil.rmtree(staging, ignore_errors=True)
        raise


__all__ = ["ModelArguments", "DataArguments", "MiniGPTTrainingArguments", "run_training", "RunResult", "build_model",
           "build_trainer"]
