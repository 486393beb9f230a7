"""A MiniGPT runs wherever GPT-2 runs: a trained run loads with trust_remote_code under transformers 4.57.1, 5.0.0
and the pinned version, its GPT-2 export loads without remote code under all three, each in a fresh process that
cannot import the project (as other people's code would); the README's Python snippets run as written from
another folder; the folder's card tells the truth about the data's rights and the model's shape."""

import json
import stat
import textwrap
from pathlib import Path

import pytest
import torch
import transformers
from conftest import outputs_of, start_without_project
from huggingface_hub import ModelCard
from test_training import corpus_file, run_cli
from transformers import AutoTokenizer, pipeline
from transformers_envs import STACKS, ensure_env

from minigpt.corpus import BUILTIN_CORPORA
from minigpt.export_gpt2 import main as export_main
from minigpt.model_card import BUILTIN_RIGHTS, SUPPORTED_RANGE, TESTED_TRANSFORMERS, training_data
from modeling_minigpt import MiniGPTForCausalLM

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "the model reads"
NEW = 12
# A run with the context of the README's snippets (prompt + 60 new tokens), small enough to train in seconds.
RUN = ["--preset", "tiny", "--config_overrides", "n_embd=32,n_layer=2,n_head=2", "--block_size", "96",
       "--max_steps", "6", "--eval_steps", "6", "--save_steps", "6", "--vocab_size", "300",
       "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "8", "--logging_steps", "3",
       "--dataloader_num_workers", "0", "--seed", "3"]

# What other people's code does with the two folders; prints one JSON line.
CHECK = """
import json, torch, transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

run, export, prompt, new = {run!r}, {export!r}, {prompt!r}, {new}
result = {{"transformers": transformers.__version__}}
for name, folder, kwargs in (("minigpt", run, {{"trust_remote_code": True}}), ("gpt2", export, {{}})):
    tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)  # as the cards say (5.0.0 asks otherwise)
    model = AutoModelForCausalLM.from_pretrained(folder, **kwargs).eval()
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
    greedy = model.generate(**inputs, max_new_tokens=new, do_sample=False)
    result[name] = {{"class": type(model).__name__, "tokenizer": type(tokenizer).__name__,
                     "ids": inputs.input_ids[0].tolist(), "logits": logits[0].tolist(), "greedy": greedy[0].tolist()}}
    if name == "minigpt":
        torch.manual_seed(0)
        result[name]["sampled"] = model.generate(**inputs, max_new_tokens=new, do_sample=True, top_k=0)[0].tolist()
        generator = pipeline("text-generation", model=folder, trust_remote_code=True)
        result[name]["pipeline"] = generator(prompt, max_new_tokens=new, do_sample=False)[0]["generated_text"]
        try:
            model.generate(**inputs, max_new_tokens=model.config.max_position_embeddings)
        except ValueError as error:
            result[name]["refused"] = str(error)
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A run trained by train.py and its GPT-2 export by `python -m minigpt.export_gpt2` (in this process)."""
    root = tmp_path_factory.mktemp("portability")
    run, export = root / "project" / "runs" / "minigpt", root / "gpt2"
    assert run_cli("--train_file", corpus_file(root), "--output_dir", run, *RUN) == 0
    assert export_main([str(run), str(export)]) == 0
    return run, export


@pytest.fixture(scope="module")
def expected(folders):
    """What the pinned stack computes with the project's own class."""
    run, _ = folders
    model = MiniGPTForCausalLM.from_pretrained(run).eval()
    tokenizer = AutoTokenizer.from_pretrained(run)
    inputs = tokenizer(PROMPT, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits[0]
    greedy = model.generate(**inputs, max_new_tokens=NEW, do_sample=False)[0].tolist()
    text = pipeline("text-generation", model=model, tokenizer=tokenizer)(PROMPT, max_new_tokens=NEW,
                                                                          do_sample=False)[0]["generated_text"]
    return {"ids": inputs.input_ids[0].tolist(), "logits": logits, "greedy": greedy, "pipeline": text}


def test_the_card_names_every_tested_version():
    assert set(TESTED_TRANSFORMERS) == {*STACKS, transformers.__version__}
    readme = (ROOT / "README.md").read_text()
    assert all(version in readme and version in SUPPORTED_RANGE for version in TESTED_TRANSFORMERS)


def card_example(folder: Path) -> str:
    """The Python example of the folder's card (its last ```python block)."""
    return ModelCard.load(folder / "README.md").text.split("```python\n")[-1].split("```")[0]


def readme_blocks() -> list[str]:
    """README.md's ```python blocks that run here, in order: those whose first line is `# needs: ...` (the
    network, a running app) are left out."""
    blocks = [b.split("```")[0] for b in (ROOT / "README.md").read_text().split("```python\n")[1:]]
    run_blocks = [b for b in blocks if not b.startswith("# needs: ")]
    assert len(run_blocks) >= 3 and len(blocks) - len(run_blocks) <= 2
    return run_blocks


MARK = "\n@@ part 7f3c9e: "  # what `pinned` prints before each part's output


@pytest.fixture(scope="module")
def fresh(folders, tmp_path_factory):
    """The module's fresh processes, started at once (each is mostly its imports, so three take about the time of
    two on two cores): CHECK under each other transformers version, and `pinned`. Returns {version: what it
    printed}."""
    run, export = folders
    started = {}
    for version in STACKS:
        env = ensure_env(version)  # built by .ci/run; here only when missing
        script = CHECK.format(run=str(run), export=str(export), prompt=PROMPT, new=NEW)
        started[version] = start_without_project(script, tmp_path_factory.mktemp(version), first_on_path=env)
    started["pinned"] = start_pinned(folders, tmp_path_factory)
    return outputs_of(started)


@pytest.fixture(scope="module")
def pinned(fresh):
    parts = dict(part.split("\n", 1) for part in fresh["pinned"].split(MARK)[1:])
    assert list(parts) == ["card", "check", "readme"], fresh["pinned"][-3000:]
    return parts


def start_pinned(folders, tmp_path_factory):
    """One fresh process under the pinned transformers (a cold start costs seconds), in three parts, each printed
    after a line MARK + its name: `card`, the run's card example as written, from the folder that holds the run, and
    `check`, CHECK on both folders, both before the project can be imported (start_without_project checks it);
    then `readme`, README.md's Python blocks as one script (they build on each other), run from a folder that is
    not the project's, with the project put on the path and the tiny run where `python train.py` saves (the code
    is the real one, linked). torch.compile is switched off (TORCHDYNAMO_DISABLE: the compiled path's results are
    tests/test_speed_paths.py's). The `pinned` fixture splits what it printed into {part: text}."""
    run, export = folders
    project = run.parents[1]
    for name in ("minigpt", "configuration_minigpt.py", "modeling_minigpt.py"):
        if not (project / name).exists():
            (project / name).symlink_to(ROOT / name)
    root = tmp_path_factory.mktemp("pinned")
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    example = card_example(run)
    readme = "\n".join(readme_blocks()) + textwrap.dedent("""
        import minigpt
        print("ran from", minigpt.__file__)
    """)
    script = "\n".join([
        "import os, sys",
        'os.environ["TORCHDYNAMO_DISABLE"] = "1"',
        f"os.chdir({str(run.parent)!r})",
        f"print({MARK + 'card'!r})",
        f"exec(compile({example!r}, 'card example', 'exec'), {{}})",
        f"print({MARK + 'check'!r})",
        f"exec(compile({CHECK.format(run=str(run), export=str(export), prompt=PROMPT, new=NEW)!r}, 'CHECK', 'exec'),"
        " {})",
        f"sys.path.insert(0, {str(project)!r})",
        f"os.chdir({str(elsewhere)!r})",
        f"print({MARK + 'readme'!r})",
        f"exec(compile({readme!r}, 'README.md', 'exec'), {{}})",
    ])
    return start_without_project(script, root)


@pytest.mark.parametrize("version", [*STACKS, "pinned"])
def test_the_run_and_its_gpt2_export_load_under(version, expected, fresh, pinned):
    printed = pinned["check"] if version == "pinned" else fresh[version]
    assert "Do you wish to run the custom code?" not in printed  # nothing waits for an answer
    result = json.loads(printed.strip().splitlines()[-1])
    assert result["transformers"] == (transformers.__version__ if version == "pinned" else version)

    mini, gpt2 = result["minigpt"], result["gpt2"]
    assert (mini["class"], gpt2["class"]) == ("MiniGPTForCausalLM", "GPT2LMHeadModel")
    for loaded in (mini, gpt2):  # the same tokens in, the same logits and greedy tokens out
        assert loaded["ids"] == expected["ids"]
        torch.testing.assert_close(torch.tensor(loaded["logits"]), expected["logits"], atol=1e-4, rtol=1e-4)
        assert loaded["greedy"] == expected["greedy"]
    sampled = mini["sampled"]
    assert sampled[: len(expected["ids"])] == expected["ids"] and len(sampled) > len(expected["ids"])
    assert all(0 <= token < len(mini["logits"][0]) for token in sampled)
    assert mini["pipeline"] == expected["pipeline"]
    assert "pass max_new_tokens=" in mini["refused"]  # refused up front in every version


def test_the_folders_are_readable_and_their_tokenizer_loads_in_any_version(folders):
    for folder in folders:
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir() if p.is_file()}
        assert modes["model.safetensors"] == 0o644 and set(modes.values()) == {0o644}, modes
        config = json.loads((folder / "tokenizer_config.json").read_text())
        assert config["tokenizer_class"] == "PreTrainedTokenizerFast"  # 4.57 has no TokenizersBackend
        assert config["model_input_names"] == ["input_ids", "attention_mask"]


def test_the_cards_say_where_the_model_came_from_and_what_its_data_allows(folders):
    run, export = folders
    card, gpt2_card = ModelCard.load(run / "README.md"), ModelCard.load(export / "README.md")
    assert card.data.license == gpt2_card.data.license == "unknown"  # a user's file: nobody knows
    assert "`corpus.txt`, text of the person who trained this model. Its license is unknown" in card.text
    assert "| preset | tiny |" in card.text  # and the overrides as they change the preset:
    assert "| config_overrides | hidden_size=32,num_attention_heads=2 |" in card.text
    assert "2 layers, 2 heads, 32 wide (MLP 128, gelu_pytorch_tanh), context 96" in card.text
    assert SUPPORTED_RANGE in card.text and SUPPORTED_RANGE in gpt2_card.text
    assert "The MiniGPT model `minigpt` as a plain GPT-2" in gpt2_card.text and "corpus.txt" in gpt2_card.text
    assert gpt2_card.data.eval_results[0].metric_value == card.data.eval_results[0].metric_value
    assert "trust_remote_code" not in gpt2_card.text.split("## Usage")[1]


def test_each_corpus_gets_its_own_rights():
    assert set(BUILTIN_RIGHTS) == set(BUILTIN_CORPORA)
    machado, text = training_data({"builtin_corpus": None})  # the default corpus
    assert machado["license_name"] == "public-domain" and "public domain" in text
    reference, text = training_data({"builtin_corpus": "python-reference"})
    assert reference["license_name"] == "psf-2.0" and "Python Software Foundation License" in text
    hub, text = training_data({"dataset_name": "someone/texts", "model_name_or_path": "gpt2"})
    assert hub == {"license": "unknown"} and "https://huggingface.co/datasets/someone/texts" in text
    assert "`gpt2`, whose own license applies too" in text


def test_export_refuses_what_it_cannot_write_and_leaves_nothing(folders, tmp_path, capsys):
    run, export = folders
    no_biases = tmp_path / "no_biases"
    MiniGPTForCausalLM.from_pretrained(run, mlp_bias=False).save_pretrained(no_biases)
    capsys.readouterr()
    for source, out, message in ((no_biases, tmp_path / "a", "mlp_bias=False has no GPT-2 form"),
                                 (run, export, "already exists"),
                                 (tmp_path, tmp_path / "b", "not a saved model folder")):
        assert export_main([str(source), str(out)]) == 2
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and message in errors[0] and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["no_biases"]  # no half-written or staging folder


def test_the_card_example_runs_as_written_from_the_folder_that_holds_the_run(folders, pinned):
    run, _ = folders
    assert f"from_pretrained('{run.name}'" in card_example(run)
    assert "Do you wish to run the custom code?" not in pinned["card"]
    assert pinned["card"].strip()  # it generated and printed, in a process that cannot import the project


def test_readme_python_snippets_run_as_written_from_another_folder(folders, pinned):
    """Every ```python block of README.md, in order, as one script, run from another folder (see `pinned`)."""
    assert "Era uma vez" in readme_blocks()[0]  # the default corpus is Portuguese
    run, _ = folders
    assert f"ran from {run.parents[1] / 'minigpt' / '__init__.py'}" in pinned["readme"]
