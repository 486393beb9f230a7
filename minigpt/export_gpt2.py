"""Export a finished MiniGPT run as a plain GPT-2 folder, which loads without remote code.

    python -m minigpt.export_gpt2 RUN_DIR OUT_DIR

MiniGPT's architecture is GPT-2's (pre-LayerNorm, tanh GELU, learned positions, biases, tied embeddings), so the
weights carry over unchanged: OUT_DIR holds a transformers GPT2LMHeadModel (safetensors), the run's tokenizer and
generation config, and a model card that says where it came from. `AutoModelForCausalLM.from_pretrained(OUT_DIR)`
loads it in transformers 4.57.1 through 5.x without trust_remote_code, with the run's logits. OUT_DIR is built beside
itself and renamed into place whole: an error leaves no half-written folder.
"""

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from transformers import AutoTokenizer

from minigpt.model_card import write_gpt2_card
from minigpt.portable import make_readable, save_tokenizer
from modeling_minigpt import MiniGPTForCausalLM


class ExportError(ValueError):
    """What is wrong with the run folder or the output folder, in one line that says what to change."""


def _check_run(run: Path) -> None:
    try:
        model_type = json.loads((run / "config.json").read_text()).get("model_type")
    except (OSError, ValueError):
        raise ExportError(f"{run} is not a saved model folder (no readable config.json); pass a finished run's "
                          "folder, e.g. runs/minigpt") from None
    if model_type != "minigpt":
        raise ExportError(f"{run} holds a {model_type!r} model; pass a MiniGPT run's folder")
    if not (run / "model.safetensors").is_file():
        raise ExportError(f"{run} has no model.safetensors; pass a finished run's folder")


def export_gpt2(run_dir, out_dir) -> Path:
    """Write the GPT-2 form of the MiniGPT in `run_dir` to `out_dir` (which must not exist, or be empty); returns
    out_dir. Raises ExportError for a folder it cannot use or a model that has no GPT-2 form."""
    run, out = Path(run_dir), Path(out_dir)
    _check_run(run)
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise ExportError(f"{out} already exists; pass a new folder for the GPT-2 model")
    model = MiniGPTForCausalLM.from_pretrained(run, use_safetensors=True)  # never unpickles
    try:
        gpt2 = model.to_gpt2()
    except ValueError as error:
        raise ExportError(f"{run}: {error}") from None
    tokenizer = AutoTokenizer.from_pretrained(run)

    staging = out.absolute().parent / f".{out.name}.exporting"  # same file system: the final rename is atomic
    shutil.rmtree(staging, ignore_errors=True)  # what a killed export left
    try:
        staging.mkdir(parents=True)
        gpt2.save_pretrained(staging)
        save_tokenizer(tokenizer, staging)
        write_gpt2_card(staging, name=out.name, run_dir=run, tokenizer=tokenizer, config=model.config,
                        params=model.num_parameters())
        make_readable(staging)
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.rename(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minigpt.export_gpt2", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a finished MiniGPT run folder (what train.py or the app wrote)")
    parser.add_argument("out_dir", help="the GPT-2 folder to write (must not exist yet)")
    args = parser.parse_args(argv)
    try:
        out = export_gpt2(args.run_dir, args.out_dir)
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a full disk, a read-only folder
        print(f"error: cannot write {args.out_dir}: {error.strerror or error}", file=sys.stderr)
        return 2
    print(f"GPT-2 model saved in {out.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
