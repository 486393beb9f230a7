"""The chapter's notebook runs top to bottom (MINIGPT_NOTEBOOK_FAST=1: tiny settings, CPU, offline)."""

import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PRINTED = {"minigpt_pt.ipynb": ("perda do modelo:", "retomado de:"), "minigpt_en.ipynb": ("model loss:", "resumed from:")}


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes_without_errors(path, tmp_path, monkeypatch):
    monkeypatch.setenv("MINIGPT_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the fast path must need no download
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets_cache"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    notebook = nbformat.read(path, as_version=4)
    # Raises CellExecutionError, with the cell and its traceback, at the first failing cell.
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    loss_line, resume_line = PRINTED[path.name]
    assert loss_line in text and resume_line in text  # the cross-entropy and resume cells printed
    assert (tmp_path / "runs" / "minigpt" / "model.safetensors").is_file()
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
