"""A run's settings: the three argument dataclasses that train.py's HfArgumentParser reads (named as in
transformers' run_clm.py) and that the app's form makes, the bounds of their values, and the record of the settings
that decide the model (run_settings.json).

Each dataclass declares its bounds once, beside its fields (`BOUNDS`; choices stay in the fields' metadata, where
HfArgumentParser reads them), and checks them when it is made: the command line, the app and any Python caller
refuse the same bad value with the same one-line SettingError. The app's stricter limits (a shared CPU Space) are a
layer of its own (space/job_inputs.py) that only narrows these.
"""

import inspect
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from pathlib import Path
from typing import ClassVar, get_args

import torch
from transformers import SchedulerType, TrainingArguments

from configuration_minigpt import PRESETS, MiniGPTConfig
from minigpt.corpus import BUILTIN_CORPORA
from minigpt.errors import SettingError, SetupError
from minigpt.fingerprints import file_fingerprint
from minigpt.precision import COMPILE_CHOICES, PRECISIONS, force_flags
from minigpt.ranks import choose_backend
from minigpt.schedules import check_schedule, check_scheduler_kwargs


@dataclass(frozen=True)
class Bound:
    """The numbers a setting takes: from `low` to `high` (None: no end), `low` itself excluded with `above`, `high`
    with `below`; `also`: values allowed besides (said in `note`)."""

    low: float | None = None
    high: float | None = None
    above: bool = False
    below: bool = False
    also: tuple = ()
    note: str = ""

    def allows(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if value in self.also:
            return True
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.above else value < self.low):
            return False
        return self.high is None or (value < self.high if self.below else value <= self.high)

    def __and__(self, other: "Bound") -> "Bound":
        """The values both bounds allow (the app's limits narrow the library's)."""
        low, above = max((self.low, self.above), (other.low, other.above), key=lambda end: (
            -math.inf if end[0] is None else end[0], end[1]))
        high, below = min((self.high, self.below), (other.high, other.below), key=lambda end: (
            math.inf if end[0] is None else end[0], -end[1]))
        also = tuple(v for v in self.also if other.allows(v)) + tuple(v for v in other.also if self.allows(v))
        return Bound(low, high, above, below, also, self.note if also else "")

    def words(self) -> tuple[str, dict]:
        """(kind, values): the rule for a UI to say in its own language; kind is between, positive, at_least,
        above or in (an interval, e.g. "[0, 1)")."""
        shown = {"low": _number(self.low), "high": _number(self.high)}
        if self.low is not None and self.high is not None and not (self.above or self.below):
            return "between", shown
        if self.high is None and self.low == 0 and self.above:
            return "positive", shown
        if self.high is None and self.low is not None:
            return ("above" if self.above else "at_least"), shown
        interval = f"{'(' if self.above else '['}{_number(self.low) if self.low is not None else '-inf'}, " \
                   f"{_number(self.high) if self.high is not None else 'inf'}{')' if self.below else ']'}"
        return "in", {**shown, "interval": interval}

    def __str__(self) -> str:
        kind, values = self.words()
        text = {"between": "between {low} and {high}", "positive": "a positive number", "at_least": "at least {low}",
                "above": "above {low}", "in": "in {interval}"}[kind].format(**values)
        return f"{text} ({self.note})" if self.note else text


@dataclass(frozen=True)
class OneOf:
    """A setting that takes one of `choices`."""

    choices: tuple

    def allows(self, value) -> bool:
        return value in self.choices

    def __str__(self) -> str:
        return f"one of: {', '.join(map(str, self.choices))}"


def _number(value) -> str:
    return "" if value is None else str(int(value)) if float(value).is_integer() else str(value)


POSITIVE = Bound(0, above=True)
AT_LEAST_1 = Bound(1)
FRACTION = Bound(0, 1, below=True)  # [0, 1)


def bound_of(cls, name: str) -> Bound | OneOf | None:
    """The bound the dataclass `cls` declares for its field `name` (its choices, for a field that has them)."""
    if name in cls.BOUNDS:
        return cls.BOUNDS[name]
    choices = next((f.metadata.get("choices") for f in fields(cls) if f.name == name), None)
    return OneOf(tuple(choices)) if choices else None


def check_settings(cls, values: Mapping) -> None:
    """Raise a SettingError for the first of `values` (field name -> value) outside its bound in `cls`. A field
    that may be None (not set) may be None."""
    unset_allowed = {f.name for f in fields(cls) if f.default is None or type(None) in get_args(f.type)}
    for name, value in values.items():
        bound = bound_of(cls, name)
        if bound is not None and not (value is None and name in unset_allowed) and not bound.allows(value):
            raise SettingError(name, bound, value)


def _check_own_settings(arguments) -> None:
    """The bounds of `arguments` and the choices of the fields its class declares (TrainingArguments checks its own)."""
    declared = vars(type(arguments)).get("__annotations__", {})
    choices = [f.name for f in fields(arguments) if "choices" in f.metadata and f.name in declared]
    names = {*type(arguments).BOUNDS, *choices}
    check_settings(type(arguments), {name: getattr(arguments, name) for name in names})


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

    # byte-level BPE starts from the 256 bytes and adds two special tokens (a char tokenizer does not use it)
    BOUNDS: ClassVar[dict] = {"vocab_size": Bound(258, note="256 bytes and 2 special tokens")}

    def __post_init__(self):
        _check_own_settings(self)


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

    BOUNDS: ClassVar[dict] = {
        "validation_split_percentage": Bound(0, 100, above=True, below=True),
        "block_size": Bound(2),  # a block of one token predicts nothing
        "max_train_samples": AT_LEAST_1,
        "max_eval_samples": AT_LEAST_1,
        "tokenizer_sample_mb": POSITIVE,
        "max_dataset_mb": POSITIVE,
        "preprocessing_num_workers": AT_LEAST_1,
    }

    def __post_init__(self):
        _check_own_settings(self)


@dataclass
class MiniGPTTrainingArguments(TrainingArguments):
    """transformers' TrainingArguments (every flag works) with defaults that train a small GPT well."""

    output_dir: str | None = field(default="runs/minigpt", metadata={"help": "Where checkpoints and the model go."})
    do_train: bool = field(default=True, metadata={"help": "Train (--do_train false: evaluate only)."})
    do_eval: bool = field(default=True, metadata={"help": "Evaluate on the validation split."})
    max_steps: int = field(default=300, metadata={"help": "Optimizer steps (-1: use num_train_epochs)."})
    max_minutes: float | None = field(
        default=None,
        metadata={"help": "Train for this many minutes, the whole command from its start to the saved model: the "
                          "steps are planned from the measured speed, with the warmup-stable-decay schedule laid out "
                          "over them (--max_steps and --num_train_epochs are then not used)."},
    )
    per_device_train_batch_size: int = field(default_factory=lambda: 32 if torch.cuda.is_available() else 16)
    per_device_eval_batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 0.0  # with warmup-stable-decay, 0.1 did worse (bench/README.md)
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
    include_num_input_tokens_seen: str | bool = field(
        default=True, metadata={"help": "Count the tokens of every batch: the logs' tokens_seen."}
    )
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
        metadata={"help": "'muon': Muon (torch.optim.Muon's update, in fp32 on a CPU) for the hidden weight matrices, "
                          "AdamW for the rest (minigpt/optimizers.py); or any transformers optimizer name."},
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
    # --optim muon: transformers checks `optim` against its own list, which has no Muon, so the choice is kept here
    # and `optim` holds the AdamW that the Trainer would otherwise build (build_trainer hands it Muon instead)
    muon: bool = field(default=False, init=False, repr=False)

    # What the Trainer, the optimizer or the data loader would otherwise reject with a traceback after the corpus
    # and tokenizer work (or, for max_steps 0, silently change)
    BOUNDS: ClassVar[dict] = {
        "learning_rate": POSITIVE,
        "per_device_train_batch_size": AT_LEAST_1,
        "per_device_eval_batch_size": AT_LEAST_1,
        "gradient_accumulation_steps": AT_LEAST_1,
        "max_steps": Bound(1, also=(-1,), note="or -1: train for --num_train_epochs"),
        "max_minutes": POSITIVE,
        "num_train_epochs": POSITIVE,
        "weight_decay": Bound(0),
        "decay_fraction": Bound(0, 1, above=True),
        "adam_beta1": FRACTION,
        "adam_beta2": FRACTION,
        "adam_epsilon": Bound(0),
        "max_grad_norm": Bound(0, note="0: no clipping"),
        "dataloader_num_workers": Bound(0),
        "seed": Bound(0, 2**32 - 1),
        "data_seed": Bound(0, 2**32 - 1),
        "warmup_steps": Bound(0, note="steps, or a fraction < 1 of them"),
        "eval_steps": POSITIVE,
        "logging_steps": POSITIVE,
        "label_smoothing_factor": FRACTION,
        "muon_learning_rate": POSITIVE,
        "early_stopping_patience": AT_LEAST_1,
        "save_total_limit": AT_LEAST_1,
        "neftune_noise_alpha": POSITIVE,
        "eval_accumulation_steps": AT_LEAST_1,
        "eval_delay": Bound(0),
        "dataloader_prefetch_factor": AT_LEAST_1,
        "torch_empty_cache_steps": AT_LEAST_1,
    }

    def __post_init__(self):
        _check_own_settings(self)
        if self.save_strategy == "steps" and not POSITIVE.allows(self.save_steps):
            raise SettingError("save_steps", POSITIVE, self.save_steps)
        if self.optim == "muon":
            self.optim, self.muon = "adamw_torch", True
        if self.early_stopping_patience is not None:
            self.load_best_model_at_end = True
            self.metric_for_best_model = "eval_loss"
            self.greater_is_better = False
            self.save_steps = self.eval_steps
        if self.disable_tqdm is None:  # TrainingArguments would read transformers' logger, not --log_level
            self.disable_tqdm = self.log_level in ("error", "critical")
        force_flags(self)
        choose_backend(self)
        if self.bf16 and not torch.cuda.is_available():
            self.use_cpu = True  # bf16 autocast on the CPU (transformers asks for use_cpu explicitly)
        super().__post_init__()
        check_scheduler_kwargs(self)  # a JSON string until TrainingArguments parsed it
        if self.max_steps > 0:  # else the data decides the steps: checked when the scheduler is made
            check_schedule(self, self.max_steps)

    @property
    def optimizer_name(self) -> str:
        """The optimizer the run trains with, as the command named it."""
        return "muon" if self.muon else getattr(self.optim, "value", self.optim)

    def replaced(self, **changes) -> "MiniGPTTrainingArguments":
        """A copy with `changes`, made and checked as new arguments are (dataclasses.replace): what the Trainer is
        given when a run decides more (its precision plan, no pushing of checkpoints), never a change in place."""
        return replace(self, **{"optim": self.optimizer_name, **changes})


@dataclass(frozen=True)
class RunArguments:
    """One run's settings in one object, as the app's form makes them: ModelArguments, DataArguments and the keyword
    arguments of MiniGPTTrainingArguments, checked against the same bounds when it is made. The TrainingArguments
    themselves are made where the run happens (`training_arguments()`): making them sets up accelerate's process
    state, which belongs to the process that trains."""

    model: ModelArguments
    data: DataArguments
    training: dict

    def __post_init__(self):
        check_settings(MiniGPTTrainingArguments, self.training)

    def training_arguments(self) -> MiniGPTTrainingArguments:
        return MiniGPTTrainingArguments(**self.training)


# ----------------------------------------------------------------------------------------------------------------
# Settings across the dataclasses


def parse_config_overrides(model_args: ModelArguments) -> dict:
    """--config_overrides 'n_layer=6,hidden_dropout_prob=0.1' -> {'n_layer': 6, 'hidden_dropout_prob': 0.1}: each
    value typed as the preset's own by transformers' PretrainedConfig.update_from_string; the names are checked
    first (the book's and GPT-2's aliases included), so that a typo is one line rather than a traceback."""
    items = [item.split("=") for item in filter(None, (model_args.config_overrides or "").split(","))]
    for item in items:
        if len(item) != 2 or not item[0].strip():
            raise SetupError(f"--config_overrides: {'='.join(item)!r} is not key=value; write e.g. "
                             "'n_layer=6,n_head=6'")
    overrides = {key.strip(): value.strip() for key, value in items}
    known = {*inspect.signature(MiniGPTConfig).parameters, *MiniGPTConfig.attribute_map} - {"kwargs"}
    unknown = [key for key in overrides if key not in known]
    if unknown:
        raise SetupError(f"--config_overrides: unknown field(s) {', '.join(unknown)}; see configuration_minigpt.py")
    if not overrides:
        return {}
    typed = MiniGPTConfig(**PRESETS[model_args.preset])
    try:
        typed.update_from_string(",".join(f"{key}={value}" for key, value in overrides.items()))
    except (TypeError, ValueError) as error:
        raise SetupError(f"--config_overrides: {str(error).splitlines()[0]}") from None
    return {key: getattr(typed, key) for key in overrides}


def model_config(model_args: ModelArguments, block_size: int, **given) -> MiniGPTConfig:
    """The config of a fresh model: the preset, a context of `block_size`, the overrides, then `given` (the
    tokenizer's vocabulary size and special tokens)."""
    overrides = parse_config_overrides(model_args)
    try:
        return MiniGPTConfig(**{**PRESETS[model_args.preset], "max_position_embeddings": block_size, **overrides,
                                **given})
    except (TypeError, ValueError) as error:
        flag = "--config_overrides" if overrides else "--preset"
        raise SetupError(f"{flag}: {str(error).splitlines()[0]}") from None


def check_arguments(model_args: ModelArguments, data_args: DataArguments, args: MiniGPTTrainingArguments) -> None:
    """What the dataclasses cannot check one by one: how their settings go together."""
    if not (args.do_train or args.do_eval):
        raise SetupError("nothing to do: pass --do_train and/or --do_eval")
    if not args.do_train and not model_args.model_name_or_path:
        raise SetupError("evaluation only (--do_train false) needs --model_name_or_path of a saved model")
    for name in ("train_file", "validation_file"):
        path = getattr(data_args, name)
        if path and os.path.isdir(path):
            raise SetupError(f"--{name} {path} is a folder; pass a file (.txt, .jsonl/.json, .csv or .parquet)")
    if not model_args.model_name_or_path:  # a config no model can take, now rather than after the data work
        model_config(model_args, data_args.block_size or PRESETS[model_args.preset]["max_position_embeddings"])
    if args.push_as_gpt2:
        check_gpt2_shape(model_args, args)
    if data_args.streaming and args.do_train and args.max_steps < 1 and args.max_minutes is None:
        raise SetupError("--streaming needs --max_steps or --max_minutes: a stream has no length to count epochs in")
    if args.max_minutes is not None and args.world_size > 1:  # each process would measure and plan on its own
        raise SetupError("--max_minutes plans the steps of one process: under torchrun or accelerate, pass "
                         "--max_steps")
    if args.max_minutes is not None and args.lr_scheduler_type != SchedulerType.WARMUP_STABLE_DECAY:
        raise SetupError("--max_minutes plans a warmup-stable-decay schedule: leave --lr_scheduler_type out "
                         "(--decay_fraction 1 decays over the whole run, as cosine does)")
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
        config = model_config(model_args, PRESETS[model_args.preset]["max_position_embeddings"])
    except SetupError:
        return  # a config that cannot be built at all: build_model says why
    try:
        config.to_gpt2_config()
    except ValueError as error:
        raise SetupError(f"--push_as_gpt2: {error}") from None


# ----------------------------------------------------------------------------------------------------------------
# The record of a run's settings

# What decides the model a training run makes (not how it logs or how fast it runs): saved with every checkpoint
# and the finished model, and only a command with the same settings resumes them. Every field of ModelArguments and
# DataArguments counts, except these; of TrainingArguments, only those listed.
_NOT_COMPARED = {"attn_implementation", "preprocessing_num_workers", "overwrite_cache", "sample_prompts",
                 "max_dataset_mb"}
TRAINING_SETTINGS = (
    "seed", "data_seed", "max_steps", "max_minutes", "num_train_epochs", "per_device_train_batch_size", "gradient_accumulation_steps",
    "world_size", "learning_rate", "lr_scheduler_type", "warmup_steps", "weight_decay", "adam_beta1", "adam_beta2",
    "adam_epsilon", "lr_scheduler_kwargs", "decay_fraction", "max_grad_norm", "optim", "optim_args",
    "muon_learning_rate", "early_stopping_patience", "label_smoothing_factor", "neftune_noise_alpha",
    "precision",  # as asked: "auto" picks by model size and device, a forced one changes the numerics
)
_PATHS = {"model_name_or_path", "tokenizer_name", "train_file", "validation_file"}


def run_settings(model_args: ModelArguments, data_args: DataArguments, args: MiniGPTTrainingArguments) -> dict:
    """The settings, and what the corpus files hold: "corpus_files" maps each file to its size and content hash,
    so that a file changed in place is another run (refused, never "already finished" or resumed)."""
    settings = {f.name: getattr(group, f.name) for group in (model_args, data_args) for f in fields(group)
                if f.name not in _NOT_COMPARED}
    settings.update({name: getattr(args, name) for name in TRAINING_SETTINGS})
    settings["optim"] = args.optimizer_name
    settings["config_overrides"] = normalised_overrides(model_args)
    if args.max_minutes is not None:  # the time plan decides the steps
        settings["max_steps"] = settings["num_train_epochs"] = None
    for name in _PATHS & settings.keys():  # the same file, however the command spells it
        if settings[name] and os.path.exists(settings[name]):
            settings[name] = os.path.realpath(settings[name])
    settings["corpus_files"] = corpus_fingerprints(data_args)
    return json.loads(json.dumps(settings, default=lambda v: v.value if isinstance(v, Enum) else str(v)))


def normalised_overrides(model_args: ModelArguments) -> str | None:
    """--config_overrides as what they change in the preset's config: the config's own names (not the book's or
    GPT-2's aliases), typed values, sorted, without those equal to the preset's: 'n_head=2,n_embd=64' and
    'hidden_size=64,num_attention_heads=2' are the same run."""
    preset = MiniGPTConfig(**PRESETS[model_args.preset])
    overrides = {MiniGPTConfig.attribute_map.get(key, key): value
                 for key, value in parse_config_overrides(model_args).items()}
    changed = [f"{key}={value}" for key, value in sorted(overrides.items()) if getattr(preset, key, None) != value]
    return ",".join(changed) or None


def corpus_fingerprints(data_args: DataArguments) -> dict:
    """{real path: {"bytes", "blake2b"}} of --train_file and --validation_file (those that exist: a missing one is
    reported by the corpus loader)."""
    paths = (data_args.train_file, data_args.validation_file)
    return {os.path.realpath(path): file_fingerprint(path) for path in paths if path and os.path.isfile(path)}


__all__ = ["Bound", "OneOf", "ModelArguments", "DataArguments", "MiniGPTTrainingArguments", "RunArguments",
           "bound_of", "check_settings", "check_arguments", "model_config", "normalised_overrides", "run_settings"]
