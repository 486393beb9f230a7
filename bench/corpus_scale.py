"""How train.py scales with the corpus: a Portuguese .txt of 10 MB, 100 MB and 1 GB, trained twice each (a fresh
datasets cache, then the cache the first run left), as a user would run it.

    python bench/corpus_scale.py                      # 10 MB, 100 MB and 1 GB (about half an hour on 2 cores)
    python bench/corpus_scale.py --sizes 10 100       # MB
    python bench/corpus_scale.py --preset tiny

Each run is `python train.py --train_file corpus.txt --max_steps 5 --validation_split_percentage 1` (plus
--preset and --disable_tqdm): the command of issue 20's check. The corpus is the built-in Machado novels repeated
with variation (each repetition its paragraphs in another seeded order, under a new chapter heading), so that
it reads as Portuguese text but does not compress to two novels. After the cached run of each size, one
paragraph is appended to the file and the command runs once more: it must refuse, naming the changed file.

Prints a markdown table and writes bench/results-corpus-scale.json: wall time of each run, peak RSS (of the
largest process, as GNU time reports it, and of all the run's processes together, sampled every 0.2 s), MB/s
of tokenizer training and of tokenizing, and the load average before each run (2 shared cores: note it).
"""

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
MACHADO = ROOT / "minigpt" / "data" / "machado"


def write_corpus(path: Path, megabytes: float) -> int:
    """Machado's paragraphs, reshuffled per repetition under a new chapter heading, up to `megabytes` MB."""
    paragraphs = [p for name in ("quincas_borba.txt", "dom_casmurro.txt")
                  for p in (MACHADO / name).read_text(encoding="utf-8").split("\n\n") if p.strip()]
    rng, size, repetition = random.Random(0), 0, 0
    with path.open("w", encoding="utf-8") as file:
        while size < megabytes * 1e6:
            rng.shuffle(paragraphs)
            chunk = f"CAPITULO {repetition + 1}\n\n" + "\n\n".join(paragraphs) + "\n\n"
            file.write(chunk)
            size += len(chunk.encode("utf-8"))
            repetition += 1
    return size


def run(command: list[str], env: dict) -> dict:
    """Run `command` under GNU time; wall seconds, its exit code and output, peak RSS of the largest process (GNU
    time) and of the whole process tree (sampled)."""
    timed = ["/usr/bin/time", "-f", "MAXRSS_KB %M", *command]
    start = time.perf_counter()
    process = subprocess.Popen(timed, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak_tree, done = 0, threading.Event()

    def sample():
        nonlocal peak_tree
        parent = psutil.Process(process.pid)
        while not done.wait(0.2):
            try:
                tree = [parent, *parent.children(recursive=True)]
                peak_tree = max(peak_tree, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = process.communicate()[0]
    done.set()
    sampler.join()
    wall = time.perf_counter() - start
    largest = int(re.findall(r"MAXRSS_KB (\d+)", output)[-1]) * 1024
    return {"wall_s": round(wall, 1), "exit": process.returncode, "peak_rss_gb": round(largest / 1e9, 2),
            "peak_rss_all_processes_gb": round(peak_tree / 1e9, 2), "output": output}


def rate(output: str, stage: str) -> float | None:
    """MB/s of a stage from its log line, e.g. 'Tokenizing train: 99.7 MB in 20.1 s (5.0 MB/s)'."""
    found = re.findall(rf"{stage}: [\d.]+ MB in [\d.]+ s \(([\d.]+) MB/s\)", output)
    return float(found[-1]) if found else None


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=float, nargs="+", default=[10, 100, 1000], help="corpus sizes in MB")
    parser.add_argument("--preset", default=None, help="train.py's --preset (default: train.py's own)")
    parser.add_argument("--workdir", default=None, help="where corpora, caches and runs go (default: a temp dir)")
    options = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(dir=options.workdir) as work:
        work = Path(work)
        for megabytes in options.sizes:
            corpus = work / f"corpus-{megabytes:g}MB.txt"
            size = write_corpus(corpus, megabytes)
            env = {**os.environ, "HF_DATASETS_CACHE": str(work / f"cache-{megabytes:g}")}  # a fresh cache per size
            base = [sys.executable, "train.py", "--train_file", str(corpus), "--max_steps", "5",
                    "--validation_split_percentage", "1", "--disable_tqdm", "true",
                    *(["--preset", options.preset] if options.preset else [])]
            row = {"size_mb": round(size / 1e6, 1)}
            for name, out in (("first", "run-1"), ("cached", "run-2")):
                row[f"{name}_load"] = load()
                row[name] = run([*base, "--output_dir", str(work / f"{out}-{megabytes:g}")], env)
                if row[name]["exit"] != 0:
                    print(row[name]["output"][-3000:], file=sys.stderr)
                    return 1
            row["tokenizer_mb_per_s"] = rate(row["first"]["output"], "Training the tokenizer")
            row["tokenizing_mb_per_s"] = rate(row["first"]["output"], "Tokenizing train")
            with corpus.open("a", encoding="utf-8") as file:
                file.write("\n\nUm paragrafo escrito depois, no fim do arquivo.\n")
            changed = run([*base, "--output_dir", str(work / f"run-1-{megabytes:g}")], env)
            row["changed_file"] = {"exit": changed["exit"], "wall_s": changed["wall_s"],
                                   "message": next((line for line in changed["output"].splitlines()
                                                    if line.startswith("error: ")), "")}
            for name in ("first", "cached"):  # the run's own summary line, for the record
                output = row[name].pop("output")
                row[name]["done"] = next((line for line in output.splitlines() if line.startswith("done: ")), "")
            results.append(row)
            corpus.unlink()
            print(json.dumps(row), flush=True)

    print("\n| corpus | first run | cached run | peak RSS (largest process / all) | tokenizer training | "
          "tokenizing | load before (1, 5, 15 min) |")
    print("|---|---|---|---|---|---|---|")
    for row in results:
        peak = max(row["first"]["peak_rss_gb"], row["cached"]["peak_rss_gb"])
        peak_all = max(row["first"]["peak_rss_all_processes_gb"], row["cached"]["peak_rss_all_processes_gb"])
        print(f"| {row['size_mb']:,.0f} MB | {row['first']['wall_s']:.0f} s | {row['cached']['wall_s']:.0f} s | "
              f"{peak:.2f} / {peak_all:.2f} GB | {row['tokenizer_mb_per_s']} MB/s | {row['tokenizing_mb_per_s']} MB/s "
              f"| {row['first_load']} |")
    for row in results:
        print(f"{row['size_mb']:,.0f} MB, a paragraph appended: exit {row['changed_file']['exit']} in "
              f"{row['changed_file']['wall_s']} s: {row['changed_file']['message']}")
    out = ROOT / "bench" / "results-corpus-scale.json"
    out.write_text(json.dumps({"preset": options.preset or "train.py's default", "cpus": os.cpu_count(),
                               "results": results}, indent=2) + "\n")
    print(f"\nwritten {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
