"""One run, many processes, on the CPU (gloo, chosen without a flag): train.py under `torchrun --nproc_per_node 2`,
under two `torchrun --nnodes 2` launchers posing as two machines (c10d rendezvous on localhost), and under
`accelerate launch` with a two-process config. Two processes with batch 8 each learn what one process with batch
16 learns; a kill -9 of one rank is resumed by the same command; an error is one line, from the rank that failed.

Everything starts at once in one module fixture, as each launch is mostly Python start-up. The kill and the errors
use ranks forked, with torchrun's environment, from one process that has imported train.py already (it stops the
surviving rank as torchrun does): the cheap way to several more two-rank runs."""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_training import TINY, corpus_file, read_json, run_cli

from minigpt.run_folder import OutputDirLock

ROOT = Path(__file__).resolve().parents[1]
STEPS = 10  # checkpoints at 5 (where a rank is killed) and 10
RUN = ["--max_steps", STEPS, "--eval_steps", STEPS, "--save_steps", STEPS // 2, "--vocab_size", 300,
       "--disable_tqdm", "true"]
TIMEOUT = 240
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
ACCELERATE_CONFIG = """\
compute_environment: LOCAL_MACHINE
distributed_type: MULTI_GPU
num_machines: 1
machine_rank: 0
num_processes: 2
main_process_port: {port}
mixed_precision: 'no'
"""

# Two ranks forked per case, with the variables torchrun sets; prints {case: [exit codes]} as JSON.
FORKED_RANKS = textwrap.dedent("""
    import gc, json, os, signal, sys, time
    import train

    gc.freeze()  # as `python train.py` does

    folder, cases = sys.argv[1], json.loads(sys.argv[2])

    def start(case, rank, argv, port=None):
        child = os.fork()
        if child:
            return child
        if port:
            os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                              MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        output = os.open(os.path.join(folder, f"{case}-{rank}.log"), os.O_WRONLY | os.O_CREAT)
        os.dup2(output, 1)
        os.dup2(output, 2)
        code = train.main(argv)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    def wait(child):
        return os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])

    def when(path, rank):
        while not os.path.exists(path):
            if os.waitpid(rank, os.WNOHANG)[0]:
                sys.exit(f"the run ended before {path} was written")
            time.sleep(0.05)

    codes = {}
    for case in cases:
        name, port, argvs = case["name"], case["port"], case["argvs"]
        ranks = [start(name, rank, argv, port) for rank, argv in enumerate(argvs)]
        if "kill_at" in case:
            when(case["lock"], ranks[0])
            codes["busy"] = [wait(start("busy", 0, argvs[0]))]  # a second, unrelated train.py on the folder
            for path in case["kill_at"]:
                when(path, ranks[0])
            os.kill(ranks[1], signal.SIGKILL)
            codes["killed-1"] = wait(ranks[1])
            os.kill(ranks[0], signal.SIGTERM)  # what torchrun does once a rank has died
            codes[name] = [wait(ranks[0]), codes.pop("killed-1")]
        else:
            codes[name] = [wait(child) for child in ranks]
    print(json.dumps(codes))
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def training(corpus, out, batch: int) -> list[str]:
    return [str(a) for a in ("--train_file", corpus, "--output_dir", out, *TINY, *RUN,
                             "--per_device_train_batch_size", batch)]


def torchrun(*args) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *map(str, args), "train.py"]


class Launch:
    """A command started in the background, its output in a file."""

    def __init__(self, command: list[str], log: Path):
        self.log = log
        self.process = subprocess.Popen(command, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT, env=ENV)

    def wait(self, deadline: float) -> tuple[int, str]:
        try:
            code = self.process.wait(timeout=max(1.0, deadline - time.time()))
        finally:
            if self.process.poll() is None:
                self.process.kill()
        return code, self.log.read_text()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    corpus = corpus_file(root)
    (root / "two_cpu.yaml").write_text(ACCELERATE_CONFIG.format(port=free_port()))
    c10d = ["--nnodes", 2, "--nproc_per_node", 1, "--rdzv_backend", "c10d", "--rdzv_id", "minigpt",
            "--rdzv_endpoint", f"127.0.0.1:{free_port()}"]
    killed, missing = root / "killed", root / "only-on-the-first-machine.txt"
    forked_cases = [
        {"name": "killed", "port": free_port(), "argvs": [training(corpus, killed, 8)] * 2,
         # killed once checkpoint-5 is whole: both ranks' random state and the main process's state file
         "lock": str(root / ".killed.lock"),
         "kill_at": [str(killed / f"checkpoint-{STEPS // 2}" / name)
                     for name in ("rng_state_1.pth", "trainer_state.json")]},
        {"name": "resumed", "port": free_port(), "argvs": [training(corpus, killed, 8)] * 2},
        {"name": "again", "port": free_port(), "argvs": [training(corpus, killed, 8)] * 2},
        {"name": "refused", "port": free_port(), "argvs": [training(corpus, root / "held", 8)] * 2},
        {"name": "missing", "port": free_port(), "argvs": [training(corpus, root / "run", 8),
                                                          training(missing, root / "run", 8)]},
    ]
    held = OutputDirLock(root / "held").__enter__()  # an unrelated run holds this folder
    launches = {
        "torchrun": Launch([*torchrun("--nproc_per_node", 2, "--master_port", free_port()),
                            *training(corpus, root / "torchrun", 8)], root / "torchrun.log"),
        "node0": Launch([*torchrun(*c10d), *training(corpus, root / "c10d", 8)], root / "node0.log"),
        "node1": Launch([*torchrun(*c10d), *training(corpus, root / "c10d", 8)], root / "node1.log"),
        "accelerate": Launch([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                              str(root / "two_cpu.yaml"), "train.py", *training(corpus, root / "accelerate", 8)],
                             root / "accelerate.log"),
        "forked": Launch([sys.executable, "-c", FORKED_RANKS, str(root), json.dumps(forked_cases)],
                         root / "forked.log"),
    }
    deadline = time.time() + TIMEOUT
    try:
        assert run_cli(*training(corpus, root / "single", 16)) == 0  # the reference: one process, batch 16
        results = {name: launch.wait(deadline) for name, launch in launches.items()}
    finally:
        held.__exit__()
        for launch in launches.values():
            if launch.process.poll() is None:
                launch.process.kill()
    code, log = results.pop("forked")
    assert code == 0, log[-3000:]
    forked = json.loads(log.splitlines()[-1])
    for name, codes in forked.items():
        results[name] = codes, [(root / f"{name}-{rank}.log").read_text() for rank in range(len(codes))]
    return {**results, "root": root, "held": root / "held", "missing_file": missing}


@pytest.mark.parametrize("case, launchers", [("torchrun", ["torchrun"]), ("c10d", ["node0", "node1"]),
                                             ("accelerate", ["accelerate"])])
def test_two_processes_learn_what_one_process_with_twice_the_batch_learns(runs, case, launchers):
    from transformers import AutoModelForCausalLM

    for name in launchers:
        code, log = runs[name]
        assert code == 0, log[-3000:]
        assert "parallel_mode" not in log and "Traceback" not in log, log[-3000:]  # the arguments saw the launch
    assert sum(runs[name][1].count("model saved in") for name in launchers) == 1  # the main process saves

    out, single = runs["root"] / case, runs["root"] / "single"
    results, reference = read_json(out / "all_results.json"), read_json(single / "all_results.json")
    # the tokens the batches held, both ranks' (an epoch's last batch may be short: no more than a full batch each)
    assert STEPS * 8 * 32 < results["train_tokens"] <= STEPS * 16 * 32
    assert STEPS * 8 * 32 < reference["train_tokens"] <= STEPS * 16 * 32
    assert results["eval_loss"] == pytest.approx(reference["eval_loss"], rel=0.03)
    assert read_json(out / "run_settings.json")["world_size"] == 2
    history = (out / "loss_history.csv").read_text().splitlines()
    assert history[-1].startswith(f"{STEPS},{results['train_tokens']},")  # tokens seen count every rank
    model = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True)
    assert model.num_parameters() == AutoModelForCausalLM.from_pretrained(single).num_parameters()
    assert not list(runs["root"].glob(f".{case}.*")), "a lock or a staging folder was left behind"


def test_the_ranks_of_one_run_agree_however_they_were_launched(runs):
    """Same settings, same world size: one machine or two, torchrun, accelerate or forked, killed and resumed."""
    losses = {case: read_json(runs["root"] / case / "all_results.json")["eval_loss"]
              for case in ("torchrun", "c10d", "accelerate", "killed")}
    assert max(losses.values()) - min(losses.values()) < 2e-3, losses


def test_kill_9_of_one_rank_and_the_same_command_resumes_from_the_last_complete_checkpoint(runs):
    (code0, code1), _ = runs["killed"]
    assert code1 == -9 and code0 != 0
    (busy,), (err,) = runs["busy"]
    assert busy == 2 and "is in use by PID" in err  # a second train.py on the folder was refused while it ran
    codes, (err0, err1) = runs["resumed"]
    assert codes == [0, 0] and "Resuming from" in err0, err0[-3000:]
    assert read_json(runs["root"] / "killed" / f"checkpoint-{STEPS}" / "trainer_state.json")["global_step"] == STEPS
    codes, (log0, log1) = runs["again"]
    assert codes == [0, 0] and log0.count("already finished") == 1 and "already finished" not in log1


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "error" in line.lower() or "Traceback" in line]


def test_a_refusal_is_one_line_printed_once_and_every_rank_exits_2(runs):
    codes, (err0, err1) = runs["refused"]
    assert codes == [2, 2]
    assert error_lines(err0) == [f"error: {runs['held']} is in use by PID {os.getpid()} (another training run); "
                                 "wait for it to finish or pass another --output_dir"]
    assert error_lines(err1) == []


def test_an_error_on_another_rank_is_one_line_from_that_rank(runs):
    """The second machine lacks the corpus file: its rank says so, the main process stops without a word."""
    codes, (err0, err1) = runs["missing"]
    assert codes == [2, 2]
    assert error_lines(err0) == []
    assert error_lines(err1) == [f"error (process 1): --train_file {runs['missing_file']}: file not found"]
    assert not (runs["root"] / "run").exists()
