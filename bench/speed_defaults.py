"""The default training path against plain fp32, per preset, on whatever device is here (a GPU, for the table).

    python -m bench.speed_defaults                         # tiny, small, base, gpt2 at the default batch
    python -m bench.speed_defaults --explore gpt2:bf16/false   # also other paths: preset:precision/compile,...
    python -m bench.speed_defaults --presets tiny --steps 4 --batch 4   # a quick check on a CPU

Both paths go through training.build_trainer, the same Trainer as train.py: "default" is what `--precision auto
--compile auto` chooses (minigpt/precision.py), "fp32" is `--precision fp32 --compile false` (no TF32). Same
model, batch and tokens for both; tokens/s excludes the warm-up steps (where torch.compile compiles). MFU is
against the measured matmul peak of the precision each path uses.
"""

import argparse
import gc
import json
import sys
import time
from pathlib import Path

import torch
from transformers import logging as hf_logging

from bench.benchmark import device_name, minigpt, table, training_speed
from configuration_minigpt import PRESETS
from minigpt.throughput import mfu


def measure(preset: str, steps: int, batch: int, precision: str, compile: str) -> dict:
    p = PRESETS[preset]
    dims = (p["num_hidden_layers"], p["num_attention_heads"], p["hidden_size"], p["max_position_embeddings"])
    start = time.perf_counter()
    try:
        r = training_speed(minigpt, dims, steps, batch=batch, precision=precision, compile=compile, warmup=3)
        r["mfu"] = mfu(r["tokens_per_second"], minigpt(*dims).config, dims[3], r["peak_flops"])
    except Exception as error:  # noqa: BLE001 (one failing variant, e.g. a compiler error, must not end the table)
        r = {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"}
    finally:
        gc.collect()
        torch._dynamo.reset()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    r.update(preset=preset, asked=f"{precision}/{compile}", wall_seconds=time.perf_counter() - start)
    return r


def row(r: dict, fp32: dict) -> list:
    if "error" in r:
        return [r["preset"], r["asked"], "error", "", "", "", r["error"]]
    speedup = r["tokens_per_second"] / fp32["tokens_per_second"] if "tokens_per_second" in fp32 else float("nan")
    path = r["precision"] + (" + compile" if r["torch_compile"] else "")
    return [r["preset"], r["asked"], path, f"{r['tokens_per_second']:,.0f}", f"{speedup:.2f}x",
            f"{100 * r['mfu']:.1f}%", f"{r['wall_seconds']:.0f}"]


def best(runs: list[dict]) -> dict:
    """The fastest of repeated measurements (noise on a shared host only ever slows a run down)."""
    ok = [r for r in runs if "tokens_per_second" in r]
    return max(ok, key=lambda r: r["tokens_per_second"]) if ok else runs[0]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="tiny,small,base,gpt2")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 90, 15 for gpt2)")
    parser.add_argument("--repeats", type=int, default=2, help="fp32 and default alternate this often; best kept")
    parser.add_argument("--batch", type=int, default=32, help="per-device batch (the GPU default of train.py)")
    parser.add_argument("--explore", default="", help="other paths to measure, e.g. 'tiny:tf32/true,gpt2:bf16/false'")
    parser.add_argument("--json", default="speed_defaults.json", help="results, rewritten after each measurement")
    opts = parser.parse_args(argv)
    hf_logging.set_verbosity_error()
    explore = [item.split(":") for item in filter(None, opts.explore.split(","))]

    results = {"device": device_name(), "torch": torch.__version__, "batch": opts.batch, "runs": []}
    rows = []
    for preset in opts.presets.split(","):
        steps = opts.steps or (15 if preset == "gpt2" else 90)
        repeats = 1 if preset == "gpt2" else opts.repeats  # gpt2: long enough steps, and each compile is costly
        fp32, default = [], []
        for _ in range(repeats):
            fp32.append(measure(preset, steps, opts.batch, "fp32", "false"))
            default.append(measure(preset, steps, opts.batch, "auto", "auto"))
        variants = [best(fp32), best(default)]
        variants += [measure(preset, steps, opts.batch, *path.split("/")) for name, path in explore if name == preset]
        for r in variants:
            results["runs"].append(r)
            rows.append(row(r, variants[0]))
            print("  " + " | ".join(str(c) for c in rows[-1]), file=sys.stderr, flush=True)
        Path(opts.json).write_text(json.dumps(results, indent=2))

    print(f"# Default path vs fp32, MiniGPT training on {results['device']} (torch {torch.__version__})\n")
    print(f"batch {opts.batch} x the preset's context, vocabulary 8192, AdamW, Trainer; tokens/s after warm-up, "
          f"best of {opts.repeats} alternating runs of fp32 and the default (1 at gpt2)\n")
    print(table(["preset", "asked (precision/compile)", "path", "tokens/s", "vs fp32", "MFU", "wall s"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
