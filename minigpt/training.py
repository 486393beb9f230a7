"""The pre-training pipeline, one path for the CLI, the app, the tests and the benchmarks:

    corpus -> DatasetDict(train, validation) -> tokenizer (train split) -> block_size chunks
      -> MiniGPTTrainer (HF Trainer) with monitoring callbacks -> checkpoints (resumable)
      -> save_pretrained(output_dir) + tokenizer + generation config + history + plot + model card -> Hub (optional)

Arguments are dataclasses for HfArgumentParser, named as in transformers' run_clm.py.
"""

import contextlib
import copy
import inspect
import json
import logging
import math
import os
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from enum import Enum
from pathlib import Path

import datasets
import torch
from tokenizers import decoders
from transformers import (
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    EarlyStoppingCallback,
    GenerationConfig,
    TrainerCallback,
    TrainerState,
    TrainingArguments,
    set_seed,
)

from configuration_minigpt import PRESETS, MiniGPTConfig
from minigpt.blocks import stream_blocks, tokenize_and_group
from minigpt.corpus import BUILTIN_CORPORA, builtin_corpus, describe_source, load_text_datasets
from minigpt.data_progress import ProgressHook, datasets_progress_bars_off, text_bytes
from minigpt.fingerprints import file_fingerprint
from minigpt.loading import SetupError, load_pretrained
from minigpt.model_card import write_model_card
from minigpt.monitoring import (
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
from minigpt.precision import COMPILE_CHOICES, PRECISIONS, force_flags, peak_flops, plan_training
from minigpt.ranks import choose_backend, main_first
from minigpt.run_folder import (
    RUN_SETTINGS_FILE,
    OutputDirLock,
    RunPlan,
    RunSettingsCallback,
    disk_error_message,
    finish_interrupted_swap,
    plan_run,
    remove_checkpoints,
    staging_dir,
    swap_in,
)
from minigpt.tokenizer_training import train_tokenizer
from modeling_minigpt import MiniGPTForCausalLM

logger = logging.getLogger("minigpt")


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Continue from a saved MiniGPT directory, or continue pre-training GPT-2 weights (a local "
                          "GPT-2 directory or a Hub name such as 'gpt2' or 'pierreguillou/gpt2-small-portuguese'). "
                          "Leave empty to train from scratch."},
    )
    preset: str = field(
        default="small", metadata={"help": "Model size when training from scratch.", "choices": list(PRESETS)}
    )
    config_overrides: str | None = field(
        default=None,
        metadata={"help": "Override config fields, e.g. 'n_layer=6,hidden_dropout_prob=0.1' (book and GPT-2 names "
                          "work too)."},
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Reuse a saved tokenizer (a directory) instead of training one."}
    )
    tokenizer_type: str = field(
        default="bpe",
        metadata={"help": "Tokenizer to train: byte-level BPE, or character level as in the book.",
                  "choices": ["bpe", "char"]},
    )
    vocab_size: int = field(default=4096, metadata={"help": "BPE vocabulary size (char: the text decides)."})
    attn_implementation: str | None = field(
        default=None, metadata={"help": "Attention kernel: sdpa (default), eager, flash_attention_2, ..."}
    )


@dataclass
class DataArguments:
    builtin_corpus: str | None = field(
        default=None,
        metadata={"help": "A corpus shipped with MiniGPT, used when no --train_file or --dataset_name is given: "
                          "machado (Portuguese novels, the default) or python-reference (English).",
                  "choices": list(BUILTIN_CORPORA)},
    )
    dataset_name: str | None = field(default=None, metadata={"help": "A dataset on the Hugging Face Hub."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "The Hub dataset's configuration."})
    train_file: str | None = field(default=None, metadata={"help": "A .txt, .jsonl/.json, .csv or .parquet file."})
    validation_file: str | None = field(default=None, metadata={"help": "Same formats; else split off train."})
    text_column: str = field(default="text", metadata={"help": "Column holding the text (jsonl/csv/parquet/Hub)."})
    validation_split_percentage: float = field(
        default=10,
        metadata={"help": "Percent held out for validation when there is no validation file: the end of a text "
                          "(a .txt file, the novels), or whole rows chosen by --seed (tables, Hub datasets)."},
    )
    block_size: int | None = field(
        default=None, metadata={"help": "Tokens per training sequence (the context). Default: the preset's."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only this many train documents."})
    max_eval_samples: int | None = field(
        default=256,
        metadata={"help": "Evaluate on at most this many validation blocks, the first ones in reading order (as in "
                          "run_clm): 256 blocks keep an evaluation to seconds on a CPU however big the corpus is."},
    )
    tokenizer_sample_mb: float = field(
        default=100,
        metadata={"help": "Train the tokenizer on the first this many MB of the training text (all of it when "
                          "smaller): its memory and time stay bounded on a big corpus. With --streaming, the stream's "
                          "first this many MB also give the validation split (--validation_split_percentage of them)."},
    )
    streaming: bool = field(
        default=False,
        metadata={"help": "Read --dataset_name (or --train_file) as a stream while training, for data that does not "
                          "fit on disk; needs --max_steps. Nothing is cached."},
    )
    max_dataset_mb: float | None = field(
        default=None, metadata={"help": "Refuse a Hub dataset whose files add up to more MB, before downloading it."}
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes for tokenizing (datasets.map's num_proc). Default: one, whose "
                                         "tokenizer runs on every CPU core; each extra process adds its memory."}
    )
    overwrite_cache: bool = field(
        default=False, metadata={"help": "Tokenize again and overwrite the cached tokenized data."}
    )
    sample_prompts: str | None = field(
        default=None, metadata={"help": "Prompts continued at every evaluation, separated by '|'."}
    )


@dataclass
class MiniGPTTrainingArguments(TrainingArguments):
    """transformers' TrainingArguments (every flag works) with defaults that train a small GPT well."""

    output_dir: str | None = field(default="runs/minigpt", metadata={"help": "Where checkpoints and the model go."})
    do_train: bool = field(default=True, metadata={"help": "Train (--do_train false: evaluate only)."})
    do_eval: bool = field(default=True, metadata={"help": "Evaluate on the validation split."})
    max_steps: int = field(default=300, metadata={"help": "Optimizer steps (-1: use num_train_epochs)."})
    per_device_train_batch_size: int = field(default_factory=lambda: 32 if torch.cuda.is_available() else 16)
    per_device_eval_batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 0.0  # with warmup-stable-decay, 0.1 did worse (README "Benchmarks")
    adam_beta2: float = 0.99
    warmup_steps: float = field(default=0.05, metadata={"help": "Warmup steps, or a fraction < 1 of all steps."})
    lr_scheduler_type: str = "warmup_stable_decay"
    decay_fraction: float = field(
        default=0.3,
        metadata={"help": "With --lr_scheduler_type warmup_stable_decay: the last fraction of the steps, over which "
                          "the learning rate decays to 0 (unless --lr_scheduler_kwargs sets num_decay_steps)."},
    )
    eval_strategy: str = "steps"
    eval_steps: float | None = 100
    eval_on_start: bool = field(default=True, metadata={"help": "Evaluate before training: the 'before'."})
    logging_steps: float = 20
    save_steps: float = 100
    save_total_limit: int | None = 2
    precision: str = field(default="auto", metadata={"help": "auto: what measured fastest for the model's size on "
                                                     "this device (minigpt/precision.py).", "choices": PRECISIONS})
    compile: str = field(default="auto", metadata={"help": "torch.compile: auto, true, false.",
                                                   "choices": COMPILE_CHOICES})
    dataloader_pin_memory: bool = field(default_factory=torch.cuda.is_available)  # pinning only helps a GPU
    ddp_find_unused_parameters: bool | None = False  # every weight takes part in every step: DDP need not search
    early_stopping_patience: int | None = field(
        default=None,
        metadata={"help": "Stop after this many evaluations without a better validation loss; keep the best model."},
    )
    optim: str = field(
        default="adamw_torch_fused",
        metadata={"help": "'muon': torch.optim.Muon for the hidden weight matrices, AdamW for the rest "
                          "(minigpt/optimizers.py); or any transformers optimizer name."},
    )
    muon_learning_rate: float | None = field(
        default=None, metadata={"help": "Muon's learning rate with --optim muon (default: --learning_rate)."}
    )
    push_as_gpt2: bool = field(
        default=False,
        metadata={"help": "With --push_to_hub: push the finished model's GPT-2 form (a plain GPT2LMHeadModel that "
                          "loads without trust_remote_code, as python -m minigpt.export_gpt2 writes it) instead of "
                          "the MiniGPT folder."},
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Start fresh in an output_dir that holds another run (its checkpoints are deleted; its "
                          "finished model is replaced at the end). Without it, only the same run is resumed."},
    )

    def __post_init__(self):
        muon = self.optim == "muon"
        if muon:
            self.optim = "adamw_torch"  # transformers checks the name against its own list, which has no Muon
        if self.early_stopping_patience is not None:
            self.load_best_model_at_end = True
            self.metric_for_best_model = "eval_loss"
            self.greater_is_better = False
            self.save_steps = self.eval_steps
        force_flags(self)
        choose_backend(self)
        if self.bf16 and not torch.cuda.is_available():
            self.use_cpu = True  # bf16 autocast on the CPU (transformers asks for use_cpu explicitly)
        super().__post_init__()
        if muon:
            self.optim = "muon"  # build_trainer hands the Trainer minigpt.optimizers' factory
        check_training_values(self)


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


# flag -> (is the value acceptable, what it must be): what the Trainer, the optimizer or the data loader would
# otherwise reject with a traceback after the corpus and tokenizer work (or, for max_steps 0, silently change)
_TRAINING_VALUE_CHECKS = {
    "learning_rate": (_positive, "a positive number"),
    "per_device_train_batch_size": (lambda v: v >= 1, "at least 1"),
    "per_device_eval_batch_size": (lambda v: v >= 1, "at least 1"),
    "gradient_accumulation_steps": (lambda v: v >= 1, "at least 1"),
    "max_steps": (lambda v: v >= 1 or v == -1, "at least 1 (or -1: train for --num_train_epochs)"),
    "weight_decay": (lambda v: math.isfinite(v) and v >= 0, "0 or more"),
    "decay_fraction": (lambda v: math.isfinite(v) and 0 < v <= 1, "in (0, 1]"),
    "adam_beta1": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "adam_beta2": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "adam_epsilon": (lambda v: math.isfinite(v) and v >= 0, "0 or more"),
    "max_grad_norm": (lambda v: v is None or (math.isfinite(v) and v >= 0), "0 or more (0: no clipping)"),
    "dataloader_num_workers": (lambda v: v >= 0, "0 or more"),
    "seed": (lambda v: 0 <= v < 2**32, "in [0, 2**32)"),
}


def check_training_values(args: TrainingArguments) -> None:
    """Raise a one-line ValueError for a value the Trainer would reject later (HfArgumentParser and the app turn it
    into an error message before any work)."""
    for name, (ok, expected) in _TRAINING_VALUE_CHECKS.items():
        value = getattr(args, name)
        if not ok(value):
            raise ValueError(f"--{name} must be {expected}, got {value}")
    if args.max_steps == -1 and not _positive(args.num_train_epochs):
        raise ValueError(f"--num_train_epochs must be a positive number, got {args.num_train_epochs}")
    if args.save_strategy == "steps" and not _positive(args.save_steps):
        raise ValueError(f"--save_steps must be a positive number, got {args.save_steps}")


@dataclass
class RunResult:
    output_dir: str
    metrics: dict
    samples: list[dict]
    resumed_from: str | None
    already_finished: bool = False  # output_dir held this very run, finished: nothing was done


# ----------------------------------------------------------------------------------------------------------------
# Model and tokenizer


def parse_config_overrides(overrides: str | None) -> dict:
    """'n_layer=6,hidden_dropout_prob=0.1' -> {'n_layer': 6, 'hidden_dropout_prob': 0.1}."""
    result = {}
    for item in filter(None, (overrides or "").split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SetupError(f"--config_overrides: {item!r} is not key=value; write e.g. 'n_layer=6,n_head=6'")
        try:
            result[key.strip()] = json.loads(value.strip())
        except json.JSONDecodeError:
            result[key.strip()] = value.strip()
    known = {*inspect.signature(MiniGPTConfig).parameters, *MiniGPTConfig.attribute_map} - {"kwargs"}
    unknown = [k for k in result if k not in known]
    if unknown:
        raise SetupError(f"--config_overrides: unknown field(s) {', '.join(unknown)}; see configuration_minigpt.py")
    return result


def build_model(model_args: ModelArguments, tokenizer, block_size: int) -> MiniGPTForCausalLM:
    """A fresh MiniGPT sized by the preset, the overrides, the tokenizer's vocabulary and the block size."""
    settings = {
        **PRESETS[model_args.preset],
        "max_position_embeddings": block_size,
        **parse_config_overrides(model_args.config_overrides),
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    try:
        config = MiniGPTConfig(**settings)
    except (TypeError, ValueError) as error:
        raise SetupError(str(error).splitlines()[0]) from None
    kwargs = {"attn_implementation": model_args.attn_implementation} if model_args.attn_implementation else {}
    return MiniGPTForCausalLM._from_config(config, **kwargs)


def sampling_generation_config(model, tokenizer) -> GenerationConfig:
    """What generate() does by default with a saved model: sampling that reads well for a small GPT."""
    return GenerationConfig(
        do_sample=True, temperature=0.8, top_k=50, top_p=0.95, repetition_penalty=1.1,
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

# What decides the model a training run makes (not how it logs or how fast it runs): saved with every checkpoint
# and the finished model, and only a command with the same settings resumes them. Every field of ModelArguments and
# DataArguments counts, except these; of TrainingArguments, only those listed.
_NOT_COMPARED = {"attn_implementation", "preprocessing_num_workers", "overwrite_cache", "sample_prompts",
                 "max_dataset_mb"}
_COMPARED_TRAINING = (
    "seed", "max_steps", "num_train_epochs", "per_device_train_batch_size", "gradient_accumulation_steps",
    "world_size", "learning_rate", "lr_scheduler_type", "warmup_steps", "weight_decay", "adam_beta1", "adam_beta2",
    "adam_epsilon", "lr_scheduler_kwargs", "decay_fraction", "max_grad_norm", "optim", "early_stopping_patience",
)
_PATHS = {"model_name_or_path", "tokenizer_name", "train_file", "validation_file"}


def run_settings(model_args: ModelArguments, data_args: DataArguments, args: MiniGPTTrainingArguments) -> dict:
    """The settings, and what the corpus files hold: "corpus_files" maps each file to its size and content hash,
    so that a file changed in place is another run (refused, never "already finished" or resumed)."""
    settings = {f.name: getattr(group, f.name) for group in (model_args, data_args) for f in fields(group)
                if f.name not in _NOT_COMPARED}
    settings.update({name: getattr(args, name) for name in _COMPARED_TRAINING})
    for name in _PATHS & settings.keys():  # the same file, however the command spells it
        if settings[name] and os.path.exists(settings[name]):
            settings[name] = os.path.realpath(settings[name])
    settings["corpus_files"] = corpus_fingerprints(data_args)
    return json.loads(json.dumps(settings, default=lambda v: v.value if isinstance(v, Enum) else str(v)))


def corpus_fingerprints(data_args: DataArguments) -> dict:
    """{real path: {"bytes", "blake2b"}} of --train_file and --validation_file (those that exist: a missing one is
    reported by the corpus loader)."""
    paths = (data_args.train_file, data_args.validation_file)
    return {os.path.realpath(path): file_fingerprint(path) for path in paths if path and os.path.isfile(path)}


def check_arguments(model_args: ModelArguments, data_args: DataArguments, args: MiniGPTTrainingArguments) -> None:
    if not (args.do_train or args.do_eval):
        raise SetupError("nothing to do: pass --do_train and/or --do_eval")
    if not args.do_train and not model_args.model_name_or_path:
        raise SetupError("evaluation only (--do_train false) needs --model_name_or_path of a saved model")
    if model_args.preset not in PRESETS:
        raise SetupError(f"--preset {model_args.preset!r} is unknown; choose one of: {', '.join(PRESETS)}")
    if data_args.block_size is not None and data_args.block_size < 2:
        raise SetupError(f"--block_size must be at least 2, got {data_args.block_size}")
    if args.push_as_gpt2:
        check_gpt2_shape(model_args, args)
    if data_args.max_eval_samples is not None and data_args.max_eval_samples < 1:
        raise SetupError(f"--max_eval_samples must be at least 1, got {data_args.max_eval_samples}")
    if not (math.isfinite(data_args.tokenizer_sample_mb) and data_args.tokenizer_sample_mb > 0):
        raise SetupError(f"--tokenizer_sample_mb must be a positive number, got {data_args.tokenizer_sample_mb}")
    if data_args.streaming and args.do_train and args.max_steps < 1:
        raise SetupError("--streaming needs --max_steps: a stream has no length to count epochs in")
    if args.push_to_hub:
        from minigpt.hub import check_hub_access

        check_hub_access(args.hub_model_id or Path(args.output_dir).name, args.hub_token)


def check_gpt2_shape(model_args: ModelArguments, args: MiniGPTTrainingArguments) -> None:
    """--push_as_gpt2 needs --push_to_hub and a model with a GPT-2 form: refused now, not after training. (A model
    continued from --model_name_or_path is checked when it is exported.)"""
    if not args.push_to_hub:
        raise SetupError("--push_as_gpt2 chooses what --push_to_hub pushes: pass --push_to_hub too")
    if model_args.model_name_or_path:
        return
    try:
        config = MiniGPTConfig(**{**PRESETS[model_args.preset], **parse_config_overrides(model_args.config_overrides)})
    except (TypeError, ValueError):
        return  # a config that cannot be built at all: build_model says why
    try:
        config.to_gpt2_config()
    except ValueError as error:
        raise SetupError(f"--push_as_gpt2: {error}") from None


def run_training(
    model_args: ModelArguments,
    data_args: DataArguments,
    args: MiniGPTTrainingArguments,
    callbacks: Sequence[TrainerCallback] = (),
    stop_event: threading.Event | None = None,
    on_sample: Callable[[dict], None] | None = None,
    on_data_progress: ProgressHook | None = None,
) -> RunResult:
    """Train (or only evaluate) and write the finished model to args.output_dir. Raises SetupError/CorpusError
    on bad input before anything is written; the output folder is locked while the run lasts. Under torchrun or
    accelerate, the main process decides and writes, the other ranks follow (minigpt.ranks) and raise
    FailedElsewhere where another rank failed.

    callbacks: extra TrainerCallbacks (the app's progress reporting); stop_event: set it to end training at the
    next step and still save a usable model; on_sample: called with each evaluation's sample text;
    on_data_progress: called with a minigpt.data_progress.DataProgress (MB done, MB/s) while the tokenizer is
    trained and the corpus tokenized."""
    settings = run_settings(model_args, data_args, args)
    with contextlib.ExitStack() as folder:  # the main process's lock on output_dir, held until the end
        plan, finished_metrics = main_first(
            args, lambda: decide(folder, model_args, data_args, args, settings), share=True)
        if plan.finished:  # the caller says so (train.py prints "already finished")
            return RunResult(args.output_dir, finished_metrics, [], None, already_finished=True)
        try:
            return _run(model_args, data_args, args, settings, plan, list(callbacks), stop_event, on_sample,
                        on_data_progress)
        except OSError as error:  # a full disk, a read-only folder: one line, not a traceback
            message = disk_error_message(error, error.filename or args.output_dir)
            if message is None:
                raise
            raise SetupError(message) from None


def decide(folder: contextlib.ExitStack, model_args, data_args, args, settings: dict) -> tuple[RunPlan, dict | None]:
    """On the main process only (the other ranks receive its plan): check the arguments, lock output_dir (the lock
    joins `folder`) and decide what the run does with it. Returns the plan, and the finished run's metrics."""
    check_arguments(model_args, data_args, args)
    folder.enter_context(OutputDirLock(args.output_dir))
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
    model, block_size = main_first(args, lambda: fit_model(model, tokenizer, model_args, data_args))
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


def fit_model(model, tokenizer, model_args: ModelArguments, data_args: DataArguments):
    """The loaded model, or a new one sized for the tokenizer; checked against block_size. Returns (model,
    block_size)."""
    if model is not None:
        block_size = data_args.block_size or model.config.max_position_embeddings
    else:
        block_size = data_args.block_size or PRESETS[model_args.preset]["max_position_embeddings"]
        model = build_model(model_args, tokenizer, block_size)
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


def _run(model_args, data_args, args, settings, plan, callbacks, stop_event, on_sample, on_data_progress) -> RunResult:
    set_seed(args.seed)  # before the model is built: its initial weights are part of the run
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
        if corpus_fingerprints(data_args) != settings["corpus_files"]:
            raise SetupError("a corpus file changed while the run was starting; run the command again")
        if plan.resume_from:
            logger.info("Resuming from %s", plan.resume_from)
        progress = {"show_progress": show, "on_progress": on_data_progress}
        model, tokenizer, block_size = load_model_and_tokenizer(
            model_args, data_args, args, plan.resume_from or model_args.model_name_or_path, raw, cache_dir=cache_dir,
            **progress)
        chunks = main_first(args, lambda: prepare_blocks(  # the others load what the main process cached
            raw, tokenizer, block_size, data_args, cache_dir=cache_dir, **progress))

    model.generation_config = sampling_generation_config(model, tokenizer)
    prompts = default_prompts(data_args, raw)
    samples = SampleTextCallback(tokenizer, prompts, seed=args.seed, on_sample=on_sample)
    callbacks = [RunSettingsCallback(settings), samples, OverfittingCallback(), *callbacks]
    if args.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=args.early_stopping_patience))
    if stop_event is not None:
        callbacks.append(StopOnEventCallback(stop_event))

    trainer_args = copy.copy(args)
    trainer_args.push_to_hub = False  # the Trainer would push every checkpoint (and a pickle); we push once, below
    trainer = build_trainer(model, tokenizer, trainer_args, chunks["train"] if args.do_train else None,
                            chunks["validation"], block_size, callbacks)

    metrics = {}
    if args.do_train:
        if plan.fresh and trainer.is_world_process_zero():
            remove_checkpoints(args.output_dir)
        metrics.update(train(trainer, plan.resume_from))
    if args.do_eval:
        eval_metrics = final_evaluation(trainer)
        eval_metrics["eval_perplexity"] = perplexity(eval_metrics["eval_loss"])
        metrics.update(eval_metrics)
        metrics["eval_bits_per_byte"] = bits_per_byte(eval_metrics["eval_loss"], chunks["validation"], tokenizer)

    if trainer.is_world_process_zero():
        source = describe_source(data_args.train_file, data_args.validation_file, data_args.dataset_name,
                                 data_args.dataset_config_name, data_args.builtin_corpus, settings["corpus_files"])
        source += _how_the_data_was_read(model_args, data_args, raw)
        if not args.do_train:
            write_eval_only(args.output_dir, metrics, model=model_args.model_name_or_path, corpus=source)
            return RunResult(args.output_dir, metrics, samples.samples, None)
        repo_id = args.hub_model_id or Path(args.output_dir).name
        # the card shows the Trainer's copy of the arguments: what it used (e.g. the decay steps it filled in)
        card = {"name": repo_id if args.push_to_hub else Path(args.output_dir).name, "args": trainer.args,
                "model_args": model_args, "data_args": data_args, "source": source, "block_size": block_size,
                "tokenizer": tokenizer, "prompt": prompts[0]}
        save_run(trainer, tokenizer, args.output_dir, settings, metrics, card)
        if args.push_to_hub:
            from minigpt.hub import push_folder, push_gpt2

            (push_gpt2 if args.push_as_gpt2 else push_folder)(args.output_dir, repo_id, args.hub_token)
    return RunResult(args.output_dir, metrics, samples.samples, plan.resume_from)


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
            return {"train_tokens": state.global_step * trainer.tokens_per_step}
    result = trainer.train(resume_from_checkpoint=resume_from)
    return {**result.metrics, "train_tokens": trainer.state.global_step * trainer.tokens_per_step}


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


def build_trainer(model, tokenizer, args, train_dataset, eval_dataset, block_size: int, callbacks=()):
    """The Trainer every MiniGPT run uses (also for GPT-2 in the benchmarks): labels = input_ids, shifted inside
    the model's loss; MFU measured against this device's matmul peak."""
    plan = plan_training(args, model.config, block_size)
    # measured (about a second of matmuls) only by the processes whose log is shown: MFU is per device
    peak = peak_flops(args.device.type, plan.precision) if args.should_log else None
    return MiniGPTTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        data_collator=FullBlockCollator(tokenizer, mlm=False),
        callbacks=list(callbacks),
        block_size=block_size,
        peak_flops=peak,
        optimizer_cls_and_kwargs=muon_optimizer_cls_and_kwargs(args) if args.optim == "muon" else None,
    )


def bits_per_byte(loss: float, validation: datasets.Dataset, tokenizer) -> float:
    """nats/token -> bits/byte over the exact bytes of the validation text, so that tokenizers of different
    granularity compare fairly. `loss` is the mean over the predicted tokens: every token of a block but its
    first; their bytes are the validation blocks' text (decoded as one stream, the text exactly) less the
    bytes of each block's first token. eos tokens are predicted too and hold no bytes."""
    rows = validation["input_ids"]
    ids = [i for row in rows for i in row]
    n_bytes = len(tokenizer.decode(ids, skip_special_tokens=True).encode("utf-8"))
    n_bytes -= sum(_token_bytes(tokenizer, row[0]) for row in rows)
    n_predicted = sum(len(row) - 1 for row in rows)
    return loss * n_predicted / n_bytes / math.log(2)


def _token_bytes(tokenizer, token_id: int) -> int:
    if token_id in tokenizer.all_special_ids:
        return 0
    token = tokenizer.convert_ids_to_tokens(token_id)
    if isinstance(tokenizer.backend_tokenizer.decoder, decoders.ByteLevel):
        return len(token)  # byte-level BPE spells every byte as one character
    return len(tokenizer.convert_tokens_to_string([token]).encode("utf-8"))


# ----------------------------------------------------------------------------------------------------------------
# What a run writes


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=4, sort_keys=True) + "\n")


def write_results(metrics: dict, folder: Path) -> None:
    """train_results.json, eval_results.json and both in all_results.json, as Trainer.save_metrics names them."""
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


def save_run(trainer, tokenizer, output_dir: str, settings: dict, metrics: dict, card: dict) -> None:
    """The finished folder (weights, config, tokenizer, generation config, history, plot, samples, results, run
    settings, model card), built beside output_dir and swapped in whole: see minigpt.run_folder."""
    staging = staging_dir(output_dir)
    try:
        model = trainer.accelerator.unwrap_model(trainer.model)
        model.config.use_cache = True  # the Trainer turns the KV cache off for training; generate() wants it
        model.save_pretrained(staging)
        save_tokenizer(tokenizer, staging)
        log_history = trainer.state.log_history
        write_history(log_history, staging)
        if logged_samples(log_history):
            write_samples(logged_samples(log_history), staging)
        write_results(metrics, staging)
        (staging / RUN_SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n")
        write_model_card(staging, model=model, metrics=metrics, log_history=log_history, **card)
        make_readable(staging)
        swap_in(staging, output_dir)
    except BaseException:
        with contextlib.suppress(OSError):  # an exception inside swap_in: its checkpoints still go where they belong
            finish_interrupted_swap(output_dir)
        shutil.rmtree(staging, ignore_errors=True)
        raise


__all__ = ["ModelArguments", "DataArguments", "MiniGPTTrainingArguments", "run_training", "RunResult"]
