"""MiniGPT vs transformers' GPT-2, side by side in one run on whatever device is here.

    python bench/benchmark.py                  # everything (about 20 minutes on 2 idle CPU cores)
    python bench/benchmark.py --skip-quality   # speed only (a few minutes)
    python bench/benchmark.py --skip-speed --nano-steps 300   # a quick look at the quality levers

Prints markdown tables and writes JSON (bench/results-<device>.json). Training goes through the same Trainer as
train.py (training.build_trainer), quality through the same pipeline (training.run_training).
"""

import argparse
import json
import platform
import sys
import tempfile
import time
from functools import cache
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel, PrinterCallback
from transformers import logging as hf_logging

from configuration_minigpt import PRESETS, MiniGPTConfig
from minigpt.compiled_generation import compiled_generation
from minigpt.blocks import tokenize_and_group
from minigpt.corpus import load_text_datasets
from minigpt.loading import load_pretrained, untrained_model
from minigpt.precision import detect_device, precision_of
from minigpt.quantization import quantize_int8
from minigpt.scoring import text_bits_per_byte
from minigpt.teaching import DecodingSettings
from minigpt.throughput import measured_matmul_peak, mfu
from minigpt.tokenizer_training import builtin_tokenizer, train_tokenizer
from minigpt.arguments import DataArguments, MiniGPTTrainingArguments, ModelArguments
from minigpt.training import build_trainer, run_training
from modeling_minigpt import MiniGPTForCausalLM
from space.generation import stream_generate

SHAKESPEARE = ROOT / "minigpt" / "data" / "tinyshakespeare.txt"  # shipped with the project, see its README
DIMS = {  # name -> (layers, heads, width, context); vocabulary 8192 for both
    "default preset (small)": (PRESETS["small"]["num_hidden_layers"], PRESETS["small"]["num_attention_heads"],
                               PRESETS["small"]["hidden_size"], PRESETS["small"]["max_position_embeddings"]),
    "6 x 6 x 384 (base)": (6, 6, 384, 256),
}
VOCAB = 8192
NANOGPT = {"n_layer": 4, "n_head": 4, "n_embd": 128, "block": 64, "batch": 12, "lr": 1e-3, "steps": 2000}


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return f"{model}, {torch.get_num_threads()} threads"


def minigpt(layers, heads, width, context, attn="sdpa"):
    config = MiniGPTConfig(vocab_size=VOCAB, num_hidden_layers=layers, num_attention_heads=heads,
                           hidden_size=width, max_position_embeddings=context, eos_token_id=0, pad_token_id=0)
    return MiniGPTForCausalLM._from_config(config, attn_implementation=attn)


def gpt2(layers, heads, width, context, attn="sdpa"):
    config = GPT2Config(vocab_size=VOCAB, n_layer=layers, n_head=heads, n_embd=width, n_positions=context,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
                        pad_token_id=0)
    return GPT2LMHeadModel._from_config(config, attn_implementation=attn)


@cache
def corpus_chunks(context: int):
    """Real tokens (the built-in corpus, BPE with an 8192 vocabulary), cut into blocks of `context`."""
    raw = load_text_datasets(builtin_corpus_name="python-reference")
    tokenizer = train_tokenizer(raw["train"], "bpe", VOCAB)
    return tokenizer, tokenize_and_group(raw, tokenizer, context)


def training_speed(factory, dims, steps: int, batch: int = 8, precision: str = "fp32", compile: str = "false",
                   warmup: int = 2) -> dict:
    """Tokens/s of `steps` optimizer steps after `warmup` (compilation included there), through build_trainer: the
    precision and kernels are chosen exactly as in train.py (`precision="auto"`, `compile="auto"` is its default)."""
    layers, heads, width, context = dims
    tokenizer, chunks = corpus_chunks(context)
    torch.manual_seed(0)
    model = factory(layers, heads, width, context)
    steps = -(-steps // warmup) * warmup  # a whole number of logging intervals
    with tempfile.TemporaryDirectory() as tmp:
        args = MiniGPTTrainingArguments(
            output_dir=tmp, max_steps=warmup + steps, per_device_train_batch_size=batch, logging_steps=warmup,
            eval_strategy="no", save_strategy="no", eval_on_start=False, precision=precision, compile=compile,
            disable_tqdm=True, learning_rate=3e-4, warmup_steps=0, dataloader_drop_last=True,  # no odd-sized batch
        )
        trainer = build_trainer(model, tokenizer, args, chunks["train"], None, context)
        trainer.remove_callback(PrinterCallback)  # the tables are the output
        trainer.train()
    logs = [e for e in trainer.state.log_history if "tokens_per_second" in e and e["step"] > warmup]
    seconds = sum(warmup * trainer.tokens_per_step / e["tokens_per_second"] for e in logs)
    tokens_per_second = len(logs) * warmup * trainer.tokens_per_step / seconds
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return {"tokens_per_second": tokens_per_second, "final_loss": losses[-1], "precision": precision_of(args),
            "torch_compile": bool(args.torch_compile), "batch": batch, "peak_flops": trainer.peak_flops}


@torch.inference_mode()
def generation_speed(model, batch: int, new_tokens: int = 128, prompt_len: int = 16, **generate_kwargs) -> dict:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model.to(device).eval()
    prompt = torch.randint(1, VOCAB, (batch, prompt_len), generator=torch.Generator().manual_seed(0)).to(device)
    kwargs = dict(attention_mask=torch.ones_like(prompt), do_sample=False, use_cache=True, pad_token_id=0,
                  **generate_kwargs)

    def timed(n: int) -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        model.generate(prompt, max_new_tokens=n, min_new_tokens=n, **kwargs)
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    timed(new_tokens)  # warm up (and compile, for the compiled variant)
    first = min(timed(1) for _ in range(3))
    best = min(timed(new_tokens) for _ in range(3))
    return {"tokens_per_second": batch * new_tokens / best, "time_to_first_token_ms": 1000 * first}


@torch.inference_mode()
def weight_read_speed(dims, passes: int = 20) -> dict:
    """GB/s at which one pass over MiniGPT's weight matrices (a batch-1 token's floor) is read: as one tensor sum;
    as nn.Linear's one-row products (BLAS sgemv), on all threads and on one; and as compiled_generation's fused
    multiply-and-sum (MatVecLinear under torch.compile)."""
    model = minigpt(*dims)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]  # the LM head is the tied embedding
    nbytes = sum(m.weight.numel() * m.weight.element_size() for m in linears)
    flat = torch.cat([m.weight.flatten() for m in linears])
    rows = {m.in_features: torch.randn(1, m.in_features) for m in linears}

    def products():
        return [m(rows[m.in_features]) for m in linears]

    def rate(fn) -> float:
        fn()
        return nbytes / 1e9 / min(seconds_of(fn) for _ in range(passes))

    result = {"megabytes": nbytes / 1e6, "tensor_sum": rate(flat.sum), "linear": rate(products)}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result["linear_one_thread"] = rate(products)
    finally:
        torch.set_num_threads(threads)
    compiled_generation(model)
    result["fused"] = rate(torch.compile(products, fullgraph=True, dynamic=False))
    return result


def seconds_of(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def app_streaming_speed() -> dict:
    """The app's real path: a default-preset (small) model, random weights, through space.generation.stream_generate
    with the app's default decoding settings (top-p sampling, 60 new tokens, streamed from a thread)."""
    tokenizer = builtin_tokenizer(VOCAB)
    model = untrained_model("small", tokenizer)
    settings = DecodingSettings()
    ids = tokenizer("The", return_tensors="pt").input_ids

    def once():
        start = time.perf_counter()
        first, text = None, ""
        for text in stream_generate(model, tokenizer, ids, settings):
            first = first if first is not None else time.perf_counter() - start
        return first, time.perf_counter() - start, min(len(tokenizer(text).input_ids), settings.max_new_tokens)

    once()  # warm up
    first, seconds, tokens = min(once() for _ in range(3))
    return {"tokens_per_second": tokens / seconds, "time_to_first_token_ms": 1000 * first, "new_tokens": tokens}


def native_bf16() -> bool:
    """bf16 in hardware: on a CPU without it (AVX2 only), bf16 matmuls are emulated and hundreds of times slower
    than fp32, so the bf16 lines are left out there."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return detect_device(torch.device("cpu")).has_bf16


def generation_variants(dims) -> dict:
    """MiniGPT's speed paths, all through generate(): plain, bf16 weights, (CPU) int8 weights, static cache +
    torch.compile (fp32 on a CPU, bf16 on a GPU), and on a CPU also with compiled_generation's mat-vec products."""
    variants = {"MiniGPT": lambda: (minigpt(*dims), {})}
    if native_bf16():
        variants["MiniGPT bf16 weights"] = lambda: (minigpt(*dims).to(torch.bfloat16), {})
    if torch.cuda.is_available():
        variants["MiniGPT bf16 + static cache + torch.compile"] = lambda: (
            minigpt(*dims).to(torch.bfloat16), {"cache_implementation": "static"})
    else:  # the logits stay fp32's (test_speed_paths)
        variants["MiniGPT int8 weights (quantization.quantize_int8)"] = lambda: (quantize_int8(minigpt(*dims)), {})
        variants["MiniGPT fp32 + static cache + torch.compile"] = lambda: (
            (model := minigpt(*dims)), compiled_generation(model, fused_products=False))
        variants["MiniGPT fp32, the same + mat-vec as fused reductions (compiled_generation)"] = lambda: (
            (model := minigpt(*dims)), compiled_generation(model))
    return variants


def nanogpt_split(text_file: Path, out_dir: Path) -> tuple[str, str, str]:
    """nanoGPT's split of a text: the first 90 % of its bytes train, the last 10 % validate, each contiguous.
    Written as one-document .jsonl files so that the pipeline keeps every byte (no paragraph splitting).
    Returns (train file, validation file, validation text)."""
    data = text_file.read_bytes()
    cut = int(len(data) * 0.9)
    while cut < len(data) and (data[cut] & 0xC0) == 0x80:  # never cut a UTF-8 character in two
        cut += 1
    files = []
    for name, part in (("train", data[:cut]), ("validation", data[cut:])):
        path = out_dir / f"{name}.jsonl"
        path.write_text(json.dumps({"text": part.decode("utf-8")}) + "\n")
        files.append(str(path))
    return files[0], files[1], data[cut:].decode("utf-8")


# Quality levers, each measured on its own line in the same run. A recipe is: tokenizer, block, batch, learning
# rate, and any other MiniGPTTrainingArguments; the model is nanoGPT's 4 x 4 x 128 for every recipe. A lever's
# "time_share" gives it that share of nanoGPT's training time instead of all of it.
# Both baselines spell out their schedule and weight decay, so that changing train.py's defaults cannot change them.
MINIGPT_RECIPE = {"tokenizer_type": "bpe", "vocab_size": 1024, "block": 128, "batch": 16, "learning_rate": 2e-3,
                  "lr_scheduler_type": "cosine", "weight_decay": 0.1}
WSD = {"lr_scheduler_type": "warmup_stable_decay", "decay_fraction": 0.3}
BEST = {**WSD, "weight_decay": 0.0, "block": 64, "batch": 32, "learning_rate": 3e-3}  # the best found
LEVERS = {  # the other levers tried, and the command for each, are in bench/README.md
    "MiniGPT recipe (BPE 1024, block 128, batch 16, lr 2e-3, AdamW, weight decay 0.1, cosine)": {},
    "+ warmup-stable-decay schedule (last 30 % decays)": WSD,
    "+ warmup-stable-decay, no weight decay": {**WSD, "weight_decay": 0.0},
    "+ warmup-stable-decay, no weight decay, block 64, batch 32, lr 3e-3": BEST,
    "the same, in 60 % of nanoGPT's time": {**BEST, "time_share": 0.6},
}


def train_and_score(name, recipe, train_file, val_file, val_text, out_dir, budget=None, steps=None) -> dict:
    """One recipe through run_training (train.py's path), then scored on the exact validation bytes: `steps` steps,
    or as many as fit `budget` seconds of the whole run (--max_minutes: the steps planned, the schedule decayed on
    time; a cosine recipe becomes warmup then a decay over all the steps, the same shape)."""
    recipe = dict(recipe)
    n = NANOGPT
    model_args = ModelArguments(
        tokenizer_type=recipe.pop("tokenizer_type"), vocab_size=recipe.pop("vocab_size", 1024), preset="tiny",
        config_overrides=recipe.pop("config_overrides", f"n_layer={n['n_layer']},n_head={n['n_head']},"
                                                          f"n_embd={n['n_embd']}"))
    data_args = DataArguments(train_file=train_file, validation_file=val_file, block_size=recipe.pop("block"))
    quiet = {"eval_strategy": "no", "eval_on_start": False, "do_eval": False, "save_strategy": "no", "logging_steps": 100,
                 "disable_tqdm": True, "per_device_train_batch_size": recipe.pop("batch")}
    length, share = {"max_steps": steps}, recipe.pop("time_share", 1.0)
    if budget:
        length = {"max_minutes": budget * share / 60}
        if recipe.get("lr_scheduler_type") == "cosine":
            recipe.update(lr_scheduler_type="warmup_stable_decay", decay_fraction=1.0)
    start = time.time()
    result = run_training(model_args, data_args, MiniGPTTrainingArguments(
        output_dir=f"{out_dir}/run", **length, **quiet, **recipe), started_at=start)
    seconds = time.time() - start
    model = load_pretrained(f"{out_dir}/run")
    tokenizer = AutoTokenizer.from_pretrained(f"{out_dir}/run")
    bpb = text_bits_per_byte(model, tokenizer, val_text)
    print(f"  quality {name}: {bpb:.3f} bits/byte, {seconds:.0f} s", file=sys.stderr)
    steps_done = result.metrics["train_tokens"] // (quiet["per_device_train_batch_size"] * data_args.block_size)
    return {"seconds": seconds, "steps": steps_done, "bits_per_byte": bpb}


def quality_per_minute(shakespeare: Path, nano_steps: int = NANOGPT["steps"], levers=LEVERS) -> dict:
    """nanoGPT's CPU recipe through train.py's pipeline, then each MiniGPT lever given the same training time, all
    scored in bits over the exact bytes of nanoGPT's validation split."""
    n = NANOGPT
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        train_file, val_file, val_text = nanogpt_split(shakespeare, Path(tmp))
        nano = {"tokenizer_type": "char", "block": n["block"], "batch": n["batch"], "learning_rate": n["lr"],
                "warmup_steps": 100, "lr_scheduler_type": "cosine", "weight_decay": 0.1}  # nanoGPT: 100 warmup, 0.1
        name = f"nanoGPT recipe (char, block {n['block']}, batch {n['batch']}, lr {n['lr']:g}, {nano_steps} steps)"
        results[name] = train_and_score(name, nano, train_file, val_file, val_text, f"{tmp}/nano", steps=nano_steps)
        budget = results[name]["seconds"]
        for i, (name, lever) in enumerate(levers.items()):
            results[name] = train_and_score(name, {**MINIGPT_RECIPE, **lever}, train_file, val_file, val_text,
                                            f"{tmp}/lever{i}", budget=budget)
    return results


def table(headers, rows) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def generation_section(report: dict, bf16_ok: bool, device: str) -> None:
    """Generation at 6 x 6 x 384 (GPT-2 and MiniGPT's speed paths), the weight-read speeds on a CPU, and the
    app's own path: printed, and added to `report`."""
    rows = []
    dims = DIMS["6 x 6 x 384 (base)"]
    for batch in (1, 8):
        gpt2_runs = {attn: generation_speed(gpt2(*dims, attn=attn), batch) for attn in ("eager", "sdpa")}
        best_attn = max(gpt2_runs, key=lambda a: gpt2_runs[a]["tokens_per_second"])
        baseline = gpt2_runs[best_attn]
        runs = {f"GPT-2 fp32 ({best_attn})": baseline}
        if bf16_ok:
            runs["GPT-2 bf16 weights"] = generation_speed(gpt2(*dims, attn=best_attn).to(torch.bfloat16), batch)
        for name, build in generation_variants(dims).items():
            torch.manual_seed(0)
            model, kwargs = build()
            runs[name] = generation_speed(model, batch, **kwargs)
        for name, r in runs.items():
            r.update(batch=batch, model=name, vs_gpt2=r["tokens_per_second"] / baseline["tokens_per_second"])
            report["generation"].append(r)
            rows.append([batch, name, f"{r['tokens_per_second']:,.0f}", f"{r['vs_gpt2']:.2f}x",
                         f"{r['time_to_first_token_ms']:.1f}"])
    print("## Generation (6 x 6 x 384, greedy, KV cache, 128 new tokens; ratio vs GPT-2 fp32)\n")
    print(table(["batch", "model", "new tokens/s", "vs GPT-2", "time to first token (ms)"], rows) + "\n")
    if device == "cpu":
        report["weight_reads"] = reads = weight_read_speed(dims)
        print(f"Reading the {reads['megabytes']:.0f} MB of 6 x 6 x 384 weight matrices once (a batch-1 token's "
              f"floor): tensor sum {reads['tensor_sum']:.1f} GB/s; nn.Linear one-row products (BLAS) "
              f"{reads['linear']:.1f} GB/s on {torch.get_num_threads()} threads, {reads['linear_one_thread']:.1f} "
              f"on one; compiled fused multiply-and-sum (compiled_generation) {reads['fused']:.1f} GB/s.\n")
    report["app_streaming"] = app = app_streaming_speed()
    print(f"The app's path (default small preset, space.generation.stream_generate, default settings): "
          f"{app['tokens_per_second']:,.0f} new tokens/s, first token after {app['time_to_first_token_ms']:.0f} ms."
          "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-quality", action="store_true", help="skip the Tiny Shakespeare quality run")
    parser.add_argument("--skip-speed", action="store_true", help="skip the training and generation speed runs")
    parser.add_argument("--nano-steps", type=int, default=NANOGPT["steps"],
                        help="steps of nanoGPT's recipe, whose time is every other recipe's budget")
    parser.add_argument("--train-steps", type=int, default=6, help="timed training steps per measurement")
    parser.add_argument("--levers", type=json.loads, default=LEVERS,
                        help="the MiniGPT recipes to score, as JSON {name: changes to MINIGPT_RECIPE}, e.g. "
                             "'{\"wd 0\": {\"weight_decay\": 0}}' (default: LEVERS)")
    parser.add_argument("--shakespeare", type=Path, default=SHAKESPEARE, help="Tiny Shakespeare text file")
    parser.add_argument("--json", default=None, help="where to write the results (default bench/results-<device>.json)")
    opts = parser.parse_args(argv)
    hf_logging.set_verbosity_error()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    bf16_ok = native_bf16()
    peaks = {}
    if not opts.skip_speed:
        peaks["fp32"] = measured_matmul_peak(device, torch.float32)
        if bf16_ok:
            peaks["bf16"] = measured_matmul_peak(device, torch.bfloat16)
    report = {"device": device_name(), "torch": torch.__version__, "peak_flops": peaks, "training": [],
              "generation": [], "quality": {}}
    print(f"# MiniGPT benchmark on {report['device']} (torch {torch.__version__})\n")
    if peaks:
        print("matmul peak: " + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in peaks.items()) + "\n")
    if not bf16_ok:
        print("No bf16 in this device's hardware (emulated bf16 is far slower than fp32): the bf16 lines are left out.\n")

    if not opts.skip_speed:
        rows = []
        for dims_name, dims in DIMS.items():
            for precision in ["fp32"] + (["bf16"] if bf16_ok else []):
                for name, factory in (("MiniGPT", minigpt), ("GPT-2", gpt2)):
                    r = training_speed(factory, dims, opts.train_steps, precision=precision)
                    config = minigpt(*dims).config
                    r["mfu"] = mfu(r["tokens_per_second"], config, dims[3], peaks[precision])
                    r.update(dims=dims_name, precision=precision, model=name)
                    report["training"].append(r)
                    rows.append([dims_name, precision, name, f"{r['tokens_per_second']:,.0f}",
                                 f"{100 * r['mfu']:.0f}%"])
                    print(f"  training {dims_name} {precision} {name}: {r['tokens_per_second']:,.0f} tokens/s",
                          file=sys.stderr)
        print("## Training (batch 8, AdamW, Trainer)\n")
        print(table(["dimensions", "precision", "model", "tokens/s", "MFU"], rows) + "\n")

        generation_section(report, bf16_ok, device)

    if not opts.skip_quality:
        report["quality"] = quality_per_minute(opts.shakespeare, opts.nano_steps, opts.levers)
        nano = next(iter(report["quality"].values()))
        rows = [[name, r["steps"], f"{r['seconds']:.0f}", f"{r['bits_per_byte']:.3f}",
                 f"{100 * (1 - r['bits_per_byte'] / nano['bits_per_byte']):+.1f}%"]
                for name, r in report["quality"].items()]
        print("## Quality per training minute (Tiny Shakespeare, nanoGPT's split: bits over the exact validation "
              "bytes)\n")
        print(table(["recipe (model 4 x 4 x 128)", "steps", "whole run (s)", "bits per byte",
                     "fewer bits than nanoGPT's recipe"], rows) + "\n")

    path = Path(opts.json or ROOT / "bench" / f"results-{device}.json")
    path.write_text(json.dumps(report, indent=2))
    print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
