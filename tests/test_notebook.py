"""The chapter's notebooks run top to bottom (MINIGPT_NOTEBOOK_FAST=1: tiny settings, CPU, offline), and the
numbers they print agree with each other."""

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# What each notebook prints: the model's loss and the mean surprise by hand (one number, two ways), the largest
# difference between GPT-2's logits and its MiniGPT copy's, and the checkpoint the resume cell resumed from.
PRINTED = {
    "minigpt_pt.ipynb": ("perda do modelo:", "à mão:", "maior diferença entre os logits:", "retomado de:"),
    "minigpt_en.ipynb": ("model loss:", "by hand:", "largest difference between the logits:", "resumed from:"),
}

# Executes one notebook in its own kernel; raises CellExecutionError, with the cell and its traceback, at the
# first failing cell. The executed notebook, outputs and all, is written beside the runs.
RUNNER = """
import sys
import nbformat
from nbclient import NotebookClient
source, folder = sys.argv[1:]
notebook = nbformat.read(source, as_version=4)
NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": folder}}).execute()
nbformat.write(notebook, folder + "/executed.ipynb")
"""


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Both notebooks at once, each in its own process with a one-thread kernel: they are mostly Python
    start-up and per-step overhead, so two take about the time of one on two cores."""
    env = {**os.environ, "MINIGPT_NOTEBOOK_FAST": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    started = {}
    for path in NOTEBOOKS:
        folder = tmp_path_factory.mktemp(path.stem)
        with (folder / "run.log").open("w") as log:
            started[path.name] = folder, subprocess.Popen(
                [sys.executable, "-c", RUNNER, str(path), str(folder)], stdout=log, stderr=subprocess.STDOUT,
                env={**env, "HF_DATASETS_CACHE": str(folder / "datasets_cache")})
    results = {}
    try:
        for name, (folder, process) in started.items():
            code = process.wait(timeout=900)
            results[name] = folder, code, (folder / "run.log").read_text()
    finally:
        for _, process in started.values():
            if process.poll() is None:
                process.kill()
    return results


def printed_value(text: str, label: str) -> str:
    found = re.findall(rf"{re.escape(label)}\s+(\S+)", text)
    assert len(found) == 1, f"{label!r} printed {len(found)} times"
    return found[0]


@pytest.mark.slow
@pytest.mark.parametrize("name", [p.name for p in NOTEBOOKS])
def test_notebook_runs_and_its_numbers_agree(executed, name):
    folder, code, output = executed[name]
    assert code == 0, output[-5000:]  # the failing cell and its traceback
    notebook = nbformat.read(folder / "executed.ipynb", as_version=4)
    text = "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                   for o in cell.get("outputs", []))
    # No warnings, progress bars or other stderr in the cells' outputs.
    noise = "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                    for o in cell.get("outputs", []) if o.get("name") == "stderr")
    assert not noise, f"stderr in the cell outputs:\n{noise[:3000]}"
    assert "'Ã'" not in text and "'©'" not in text  # tokens show the text they stand for, not byte symbols
    model_loss, by_hand, difference, resumed = PRINTED[name]
    # The cross-entropy cell: the loss the model computes is the mean of the surprises summed by hand.
    assert printed_value(text, model_loss) == printed_value(text, by_hand)
    # GPT-2 converted to MiniGPT gives GPT-2's logits.
    assert float(printed_value(text, difference).replace(",", ".")) < 1e-4
    # The session that died after its first checkpoint resumes from it.
    assert Path(printed_value(text, resumed)).name == "checkpoint-10"
    assert (folder / "runs" / "minigpt" / "model.safetensors").is_file()
    # one step by hand gives the loss of the Trainer's first step; the overfitting run finds its turn
    number = r"(\d+[.,]\d+)"
    by_hand = re.search(rf"(?:entropia cruzada do lote|cross entropy of the batch): {number}", text)
    trainer = re.search(rf"(?:primeiro passo do Trainer|the Trainer's first step, its loss): {number}", text)
    assert by_hand and trainer and abs(float(by_hand[1].replace(",", ".")) - float(trainer[1].replace(",", "."))) < 1e-3
    assert re.search(r"(?:menor perda de validação no passo|lowest validation loss at step) \d+", text)


def test_notebook_cells_call_the_project_not_a_copy():
    """Every code cell after the install cell imports or uses project code; none defines a model or a loop."""
    for path in NOTEBOOKS:
        cells = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
        assert "pip install" in cells[0] and "google.colab" in cells[0]
        source = "\n".join(cells[1:])
        assert "nn.Module" not in source and "optimizer.step" not in source and "backward(" not in source
        assert "from minigpt" in source and "MiniGPTForCausalLM" in source
