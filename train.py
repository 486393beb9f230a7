"""Pre-train MiniGPT from the command line.

    python train.py                                   # the built-in corpus, about five minutes on 2 CPU cores
    python train.py --train_file my.txt --preset tiny --max_steps 200
    python train.py --do_train false --model_name_or_path runs/minigpt --train_file other.txt   # evaluate only
    python train.py --overwrite_output_dir ...        # start fresh where another run was (else: resume the same run)
    torchrun --nproc_per_node 2 train.py ...          # data parallel (DDP); every TrainingArguments flag works

`python train.py --help` lists every flag.
"""

import logging
import sys

import transformers
from transformers import HfArgumentParser

from minigpt.corpus import CorpusError
from minigpt.hub import HubError
from minigpt.loading import SetupError
from minigpt.training import DataArguments, MiniGPTTrainingArguments, ModelArguments, run_training


def main(argv: list[str] | None = None) -> int:
    parser = HfArgumentParser((ModelArguments, DataArguments, MiniGPTTrainingArguments))
    try:
        model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    except ValueError as error:  # TrainingArguments' own checks (e.g. contradictory strategies)
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    logging.basicConfig(format="%(message)s", level=logging.INFO if training_args.should_log else logging.WARNING)
    logging.getLogger("minigpt").setLevel(logging.INFO)
    transformers.logging.set_verbosity(training_args.get_process_log_level())  # --log_level, as in run_clm
    try:
        result = run_training(model_args, data_args, training_args)
    except (CorpusError, SetupError, HubError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if result.already_finished:
        print(f"already finished: {result.output_dir} holds this run; nothing changed "
              "(--overwrite_output_dir trains it again)")
        return 0
    if training_args.should_log:
        summary = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.metrics.items())
        print(f"done: {summary}")
        if training_args.do_train:
            print(f"model saved in {result.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
