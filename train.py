"""Pre-train MiniGPT from the command line.

    python train.py                                   # Machado de Assis's novels (built in), a few CPU minutes
    python train.py --builtin_corpus python-reference # the English built-in corpus
    python train.py --model_name_or_path gpt2 --builtin_corpus machado   # continue pre-training GPT-2's weights
    python train.py --train_file my.txt --preset tiny --max_steps 200
    python train.py --max_minutes 5                   # the whole command takes 5 minutes, its schedule planned to fit
    python train.py --do_train false --model_name_or_path runs/minigpt --train_file other.txt   # evaluate only
    python train.py --overwrite_output_dir ...        # start fresh where another run was (else: resume the same run)
    torchrun --nproc_per_node 2 train.py ...          # data parallel (DDP, gloo on CPU, NCCL on GPUs); README has
    accelerate launch train.py ...                    # the commands for many machines

`python train.py --help` lists every flag.
"""

import gc
import logging
import sys

import datasets
import huggingface_hub
import transformers
from transformers import HfArgumentParser

from minigpt.arguments import DataArguments, MiniGPTTrainingArguments, ModelArguments
from minigpt.corpus import CorpusError
from minigpt.errors import SetupError
from minigpt.hub import HubError
from minigpt.ranks import FailedElsewhere, stop_together
from minigpt.time_plan import process_start_time
from minigpt.training import run_training


def set_log_levels(training_args) -> None:
    """--log_level as in run_clm: transformers' and datasets' verbosity (and MiniGPT's own log) follow it;
    'passive' (the default) keeps transformers' warnings and MiniGPT's per-evaluation lines."""
    log_level = training_args.get_process_log_level()
    transformers.utils.logging.set_verbosity(log_level)
    datasets.utils.logging.set_verbosity(log_level)
    if training_args.disable_tqdm:  # no bar of any library: datasets' map/filter, transformers' shard writing, Hub
        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
        huggingface_hub.utils.disable_progress_bars()
    passive = training_args.log_level == "passive" and training_args.should_log
    logging.getLogger("minigpt").setLevel(logging.INFO if passive else log_level)


def main(argv: list[str] | None = None) -> int:
    parser = HfArgumentParser((ModelArguments, DataArguments, MiniGPTTrainingArguments))
    try:
        model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    except ValueError as error:  # a value out of its bounds, or TrainingArguments' own checks
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    logging.basicConfig(format="%(message)s", level=logging.INFO if training_args.should_log else logging.WARNING)
    set_log_levels(training_args)
    is_main = training_args.process_index == 0
    try:
        result = run_training(model_args, data_args, training_args, started_at=process_start_time())
    except (CorpusError, SetupError, HubError, FailedElsewhere) as error:
        if not isinstance(error, FailedElsewhere):  # else another process of this run failed, and says why
            rank = "" if is_main else f" (process {training_args.process_index})"
            print(f"error{rank}: {error}", file=sys.stderr)
        stop_together(error)
        return 2
    if not is_main:  # the main process reports the run
        return 0
    if result.already_finished:
        print(f"already finished: {result.output_dir} holds this run; nothing changed "
              "(--overwrite_output_dir trains it again)")
        return 0
    summary = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.metrics.items())
    saved = f"; model saved in {result.output_dir}" if training_args.do_train else ""
    print(f"done: {summary}{saved}")  # the final line, also with --log_level error
    return 0


if __name__ == "__main__":
    # The Trainer runs gc.collect() when training starts: the half-million objects of the imports above live as
    # long as this process, so they are frozen out of it (~0.25 s, and copy-on-write pages for dataloader workers).
    gc.freeze()
    sys.exit(main())
