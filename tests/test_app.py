"""The Gradio app, launched for real and driven through gradio_client: every endpoint, a real (tiny) training
followed through /training_status, a stop, two clients at once, and the bad inputs a learner will try."""

import json
import math
import os
import re
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from dataclasses import replace
from types import SimpleNamespace

import httpx
import pytest
import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from app_server import follow, launched_app, wait_for  # noqa: E402
from app_server import served_client as client  # noqa: E402
from conftest import make_tiny_gpt2_folder  # noqa: E402
from gradio_client import handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from space.job_views import status_html  # noqa: E402
from space.jobs import PACE_STEPS  # noqa: E402
from space.registry import APP_RUN_FILE, ModelError, load_model_dir  # noqa: E402

# A few seconds per run on 2 CPU cores: small model, short blocks, small vocabulary.
TINY = dict(corpus_source="python-reference", files=[], hub_dataset="", preset="tiny", tokenizer_type="bpe", vocab_size=300,
            length_unit="steps", max_steps=40, epochs=1, minutes=1, batch_size=8, learning_rate=3e-3, block_size=32,
            seed=1, overfit=False, early_stopping=False)
PROMPT = "The value of"
WHAT_EN = {"learning_rate": "Learning rate", "batch_size": "Batch size", "block_size": "Block size", "seed": "Seed",
           "max_steps": "Steps", "epochs": "Epochs", "minutes": "Minutes"}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("app")
    tiny_gpt2 = make_tiny_gpt2_folder(root / "tiny-gpt2")  # stands in for a Hub GPT-2, offline
    with launched_app(root, max_upload_mb=0.05, pretrained=[str(tiny_gpt2)]) as (ctx, url):
        yield SimpleNamespace(url=url, ctx=ctx, root=root)


@pytest.fixture(scope="module")
def api(served):
    return client(served)


def run_training(api, **overrides):
    """/train (it answers at once), then follow the training; returns (/train's answer, every status seen)."""
    answer = api.predict(**{**TINY, **overrides}, api_name="/train")
    seen = []

    def ended():
        seen.append(api.predict(api_name="/training_status"))
        return seen[-1]["state"] in ("finished", "stopped", "failed")

    wait_for(ended, timeout=400)
    return answer, seen


# ----------------------------------------------------------------------------------------------------------------


def test_every_action_has_an_api_name_and_generate_needs_only_a_prompt(api):
    info = api.view_api(print_info=False, return_format="dict")["named_endpoints"]
    for name in ("/train", "/stop", "/generate", "/compare", "/next_token_probabilities", "/surprise", "/download",
                 "/push_to_hub", "/training_status", "/models"):
        assert name in info, name
    parameters = info["/generate"]["parameters"]
    assert parameters[0]["parameter_name"] == "prompt"
    assert all(p["parameter_has_default"] for p in parameters[1:])
    assert [m["key"] for m in api.predict(api_name="/models")] == ["untrained/machado", "untrained/python-reference",
                                                                  "pretrained/tiny-gpt2"]


def test_generate_streams_and_the_same_seed_gives_the_same_text(api):
    job = api.submit(PROMPT, strategy="sample", max_new_tokens=30, seed=3, api_name="/generate")
    streamed = list(job)
    final = job.result()
    assert final.startswith(PROMPT) and len(final) > len(PROMPT)
    assert len(streamed) >= 5  # token by token, not one final answer
    assert all(b.startswith(a) for a, b in zip(streamed, streamed[1:]))
    assert api.predict(PROMPT, strategy="sample", max_new_tokens=30, seed=3, api_name="/generate") == final
    assert api.predict(PROMPT, strategy="sample", max_new_tokens=30, seed=4, api_name="/generate") != final
    for strategy in ("greedy", "top_k", "top_p", "beam"):
        assert api.predict(PROMPT, strategy=strategy, max_new_tokens=8, api_name="/generate").startswith(PROMPT)


def test_same_seed_same_text_while_other_visitors_generate(served, api):
    expected = api.predict(PROMPT, strategy="top_p", max_new_tokens=40, seed=11, api_name="/generate")
    # one client per thread: a gradio_client shares one event stream between its calls, racy across threads
    others, mine = [client(served) for _ in range(3)], [client(served) for _ in range(3)]
    with ThreadPoolExecutor(6) as pool:
        noise = [pool.submit(c.predict, PROMPT, strategy="sample", temperature=1.5, max_new_tokens=60, seed=i,
                             api_name="/generate") for i, c in enumerate(others)]
        mine = [pool.submit(c.predict, PROMPT, strategy="top_p", max_new_tokens=40, seed=11, api_name="/generate")
                for c in mine]
        assert [f.result() for f in mine] == [expected] * 3
        assert all(f.result().startswith(PROMPT) for f in noise)


@pytest.mark.parametrize("kwargs, message", [
    (dict(prompt=""), "prompt is empty"),
    (dict(prompt="word " * 300), "context is 128"),
    (dict(prompt=PROMPT, strategy="sample", temperature=0), "temperature 0 is greedy"),
    (dict(prompt=PROMPT, strategy="top_k", top_k=0), "top_k of at least 1"),
    (dict(prompt=PROMPT, model="run/nothing-here"), "unknown model"),
    (dict(prompt=PROMPT, strategy="nucleus"), "nucleus"),
])
def test_bad_generation_inputs_give_a_message(api, kwargs, message):
    with pytest.raises(AppError, match=message):
        api.predict(**kwargs, api_name="/generate")


def test_messages_follow_the_browser_language_and_the_app_stays_up(served, api):
    portuguese = client(served, **{"Accept-Language": "pt-BR,pt;q=0.9,en;q=0.8"})
    with pytest.raises(AppError, match="O prompt está vazio"):
        portuguese.predict("", api_name="/generate")
    with pytest.raises(AppError, match="Passos deve ser entre 1 e 100000; veio 0"):
        portuguese.predict(**{**TINY, "max_steps": 0}, api_name="/train")
    assert api.predict(PROMPT, max_new_tokens=5, api_name="/generate").startswith(PROMPT)
    # a prompt longer than the room left: fewer new tokens (a warning), not an error
    long_prompt = "word " * 120
    assert api.predict(long_prompt, model="untrained/python-reference", max_new_tokens=60, strategy="greedy",
                       api_name="/generate").startswith(long_prompt)  # "word": one token of the Python reference's


def test_one_training_step_by_hand_in_both_languages(served, api):
    step = {k: TINY[k] for k in ("corpus_source", "preset", "tokenizer_type", "vocab_size", "batch_size",
                                 "learning_rate", "block_size", "seed")}
    report = api.predict(**step, api_name="/one_training_step")
    for part in ("1. Forward pass", "2. Cross entropy", "loss.backward()", "optimizer.step()", "5. The same batch"):
        assert part in report, part
    assert report.count("<tr>") == 1 + 4 + 1 + 5  # 4 positions; token and position embeddings, 2 layers, final norm
    before, after = (float(x) for x in re.search(r"loss (\d+\.\d+) → (\d+\.\d+)", report).groups())
    assert math.log(300) - 0.5 < before < math.log(300) + 0.5 and after < before

    portuguese = client(served, **{"Accept-Language": "pt-BR,pt;q=0.9"})
    relatorio = portuguese.predict(**step, api_name="/one_training_step")
    assert "Passagem para a frente" in relatorio and "Entropia cruzada do lote" in relatorio
    assert re.search(r"perda \d,\d{4} → \d,\d{4}", relatorio)  # Portuguese numbers
    with pytest.raises(AppError, match="corpus embutido"):
        portuguese.predict(**{**step, "corpus_source": "upload"}, api_name="/one_training_step")


def test_next_token_probabilities_mark_the_cut_tokens(api):
    before, after, summary, table = api.predict(PROMPT, temperature=0.8, top_k=4, top_p=1.0, n_bars=10,
                                                api_name="/next_token_probabilities")
    rows_before = before["value"]["data"]
    rows_after = after["value"]["data"]
    columns = before["value"]["columns"]
    token, p, status = (columns.index(c) for c in ("token", "p", "status"))
    kept = [r for r in rows_after if r[status] == "kept"]
    cut = [r for r in rows_after if r[status] == "cut off"]
    assert len(kept) == 4 and len(cut) >= 6
    assert all(r[token].startswith("✂") and r[p] == 0 for r in cut)
    assert sum(r[p] for r in kept) == pytest.approx(1.0, abs=1e-4)
    assert all(r[p] > 0 for r in rows_before)
    assert "of 2,048 tokens" in summary
    assert len(table["data"]) == len(rows_before)
    with pytest.raises(AppError, match="prompt is empty"):
        api.predict("  ", api_name="/next_token_probabilities")


def test_surprise_highlights_every_token_and_reports_perplexity(api):
    text = "The if statement is used for conditional execution."
    highlights, summary, table = api.predict(text, api_name="/surprise")
    assert "".join(h["token"] for h in highlights) == text
    assert all(0 <= h["class_or_confidence"] <= 1 for h in highlights)
    assert "perplexity" in summary and "Cross entropy" in summary
    assert len(table["data"]) == len(highlights)


def test_training_runs_while_another_client_generates(served, api):
    """Client A trains (/train answers at once, its progress is read from /training_status); meanwhile 4 other
    clients generate at once and another one asks to train too."""
    others = [client(served) for _ in range(4)]  # one per thread (see above)
    third = client(served)
    result = {}
    trainer = threading.Thread(target=lambda: result.update(zip(("answer", "seen"), run_training(api, max_steps=60))))
    trainer.start()
    wait_for(lambda: (others[0].predict(api_name="/training_status")["line"].get("step") or 0) >= 1)  # it trains

    def generate_and_check(seed):
        text = others[seed].predict(PROMPT, strategy="sample", max_new_tokens=40, seed=seed, api_name="/generate")
        return text, others[seed].predict(api_name="/training_status")["line"]["training"]

    with ThreadPoolExecutor(4) as pool:
        generated = list(pool.map(generate_and_check, range(4)))
    assert all(text.startswith(PROMPT) for text, _ in generated)
    assert any(training for _, training in generated), generated  # they ran during the training

    status_html, *_ = third.predict(**TINY, api_name="/train")  # not an error: a place in line, at once
    assert "In line: you are number <b>1</b>" in status_html
    assert third.predict(api_name="/training_status")["position"] == 1
    assert third.predict(api_name="/stop") == "You left the line."
    assert "left the line" in third.predict(api_name="/training_status")["error"]
    trainer.join(timeout=300)

    assert "Preparing the corpus" in result["answer"][0] or "In line" in result["answer"][0]
    status = result["seen"][-1]
    assert status["state"] == "finished" and status["step"] == 60 and status["max_steps"] == 60
    running = [s for s in result["seen"] if s["state"] == "running"]
    assert len({s["step"] for s in running}) >= 3  # the progress was visible while it ran
    # tokens seen count every step trained (8 blocks of 32 tokens), not only the logged ones
    assert all(s["tokens_seen"] == s["step"] * 8 * 32 for s in running)
    # no time left is told before a few steps are timed; then it is this 60-step run's, not an hour
    lines = [s["line"] for s in running if s["line"]["training"]]
    assert all(line["remaining_seconds"] is None for line in lines if line["step"] <= PACE_STEPS)
    told = [line["remaining_seconds"] for line in lines if line["remaining_seconds"] is not None]
    assert told and max(told) < 600
    assert status["train_loss"] is not None and status["eval_loss"] < math.log(300)  # below a uniform guess
    assert status["samples"] and PROMPT not in {s["prompt"] for s in status["samples"]}  # the pipeline's prompts

    # the finished run is everywhere at once
    run_key = status["model"]
    models = {m["key"]: m for m in api.predict(api_name="/models")}
    assert run_key in models and models[run_key]["kind"] == "run"
    with zipfile.ZipFile(api.predict(run_key, api_name="/download")) as archive:
        names = archive.namelist()
    assert any(n.endswith("/model.safetensors") for n in names) and any(n.endswith("/tokenizer.json") for n in names)
    assert not any("checkpoint-" in n or n.endswith((".bin", ".pt")) for n in names)
    with zipfile.ZipFile(api.predict(run_key, True, api_name="/download")) as archive:  # its GPT-2 form
        config = json.loads(archive.read(next(n for n in archive.namelist() if n.endswith("/config.json"))))
        assert config["model_type"] == "gpt2" and not any(n.endswith(".py") for n in archive.namelist())
    assert api.predict(PROMPT, model=run_key, max_new_tokens=10, api_name="/generate").startswith(PROMPT)
    # Compare's default: this run before training (its step 0, its own tokenizer) and after it
    before, after = api.predict(PROMPT, strategy="greedy", max_new_tokens=20, api_name="/compare")
    assert before.startswith(PROMPT) and after.startswith(PROMPT) and before != after
    initial_key = f"step-0/{run_key.split('/', 1)[1]}"
    assert models[initial_key]["kind"] == "initial"
    assert tuple(api.predict(PROMPT, initial_key, run_key, strategy="greedy", max_new_tokens=20,
                             api_name="/compare")) == (before, after)
    (_, initial, initial_tokenizer), (_, trained, tokenizer) = (served.ctx.registry.get(key)
                                                                for key in (initial_key, run_key))
    assert initial_tokenizer.get_vocab() == tokenizer.get_vocab()
    assert not torch.equal(initial.lm_head.weight, trained.lm_head.weight)
    info = json.loads((served.ctx.runs_dir / run_key.split("/", 1)[1] / APP_RUN_FILE).read_text())
    assert info["steps"] == 60 and info["stopped"] is False


def test_stop_ends_within_a_step_or_two_and_keeps_a_usable_model(served, api):
    api.predict(**{**TINY, "max_steps": 5000}, api_name="/train")
    wait_for(lambda: (api.predict(api_name="/training_status").get("step") or 0) >= 3)
    asked_at = api.predict(api_name="/training_status")["step"]
    assert "Stop requested" in api.predict(api_name="/stop")
    status = follow(api, timeout=120)
    assert status["state"] == "stopped"
    assert asked_at <= status["stop_requested_at"] and status["step"] < 5000
    assert status["step"] - status["stop_requested_at"] <= 2  # the step under way, then it ends
    assert api.predict(PROMPT, model=status["model"], max_new_tokens=10, api_name="/generate").startswith(PROMPT)
    assert api.predict(api_name="/stop") == "No training is running."


def test_uploads_are_checked_copied_inside_the_app_and_trained_on(served, api, tmp_path):
    cases = {
        "picture.png": (b"\x89PNG\r\n\x1a\n" + bytes(200), "only .txt files|Invalid file type"),
        "binary.txt": (bytes(range(256)) * 4, "not a text file"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(AppError, match=message):
            api.predict(**{**TINY, "corpus_source": "upload", "files": [handle_file(str(path))]}, api_name="/train")
    with pytest.raises(AppError, match="Choose one or more .txt files"):
        api.predict(**{**TINY, "corpus_source": "upload"}, api_name="/train")
    # over the limit (0.05 MB here): refused as it enters, by gradio_client and by the server itself
    large = tmp_path / "large.txt"
    large.write_bytes(b"word " * 14_000)
    with pytest.raises(ValueError, match="exceeds the maximum file size"):
        api.predict(**{**TINY, "corpus_source": "upload", "files": [handle_file(str(large))]}, api_name="/train")
    answer = httpx.post(served.url + "gradio_api/upload", files={"files": ("large.txt", large.read_bytes())},
                        verify=False)
    assert answer.status_code == 413 and "maximum allowed size" in answer.text

    words = "the model reads a text and learns to predict the next token of the text".split()
    paragraphs = [" ".join(words[(i * 7 + j) % len(words)] for j in range(12)) + "." for i in range(150)]
    path = tmp_path / "my notes (1).TXT"
    path.write_text("\n\n".join(paragraphs))
    api.predict(**{**TINY, "corpus_source": "upload", "files": [handle_file(str(path))], "max_steps": 6,
                   "tokenizer_type": "char"}, api_name="/train")
    status = follow(api)
    assert status["state"] == "finished" and status["settings"]["corpus"] == "my_notes_1_.TXT"
    assert not any((served.ctx.tmp_dir / "uploads").rglob("*.TXT"))  # the copy is gone after the run
    assert str(served.ctx.runs_dir) not in json.dumps(status)

    # the data work, reported by the training process (a new text: the tokenizer is trained, the text tokenized)
    progress = status["data_progress"]
    assert progress["stage"] == "tokenizing validation" and progress["finished"] and 0 < progress["done_mb"] < 0.05
    starting = replace(served.ctx.line.job_of(f"session:{api.session_hash}").snapshot(), state="starting")
    shown = {lang: status_html(starting, lang) for lang in ("en", "pt")}
    assert re.search(r"Preparing the corpus: tokenizing the validation text, 0\.0\d of 0\.0\d MB, [\d,.]+ MB/s<",
                     shown["en"]), shown
    assert re.search(r"Preparando o corpus: tokenizando o texto de validação, 0,0\d de 0,0\d MB, [\d.,]+ MB/s<",
                     shown["pt"]), shown


def test_hub_dataset_offline_and_names_that_are_paths(api, monkeypatch):
    import datasets
    import huggingface_hub

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    api.predict(**{**TINY, "corpus_source": "hub", "hub_dataset": "someone/not-a-dataset"}, api_name="/train")
    status = follow(api, timeout=120)
    assert status["state"] == "failed" and "could not be reached" in status["error"]
    for name in ("../etc", "/etc/passwd", "tests"):  # "tests": a folder in the working directory
        with pytest.raises(AppError, match="not a Hub dataset name"):
            api.predict(**{**TINY, "corpus_source": "hub", "hub_dataset": name}, api_name="/train")
    with pytest.raises(AppError, match="Type a Hub dataset name"):
        api.predict(**{**TINY, "corpus_source": "hub"}, api_name="/train")


@pytest.mark.parametrize("overrides, message", [
    (dict(learning_rate=0), "Learning rate must be"),
    (dict(block_size=4), "Block size must be"),
    (dict(batch_size=0), "Batch size must be between 1 and 512"),
    (dict(length_unit="epochs", epochs=0), "Epochs must be"),
    (dict(preset="gpt2"), "not in the list of choices"),  # gradio's own check of the radio's choices
])
def test_bad_training_settings_give_a_message(api, overrides, message):
    with pytest.raises(AppError, match=message):
        api.predict(**{**TINY, **overrides}, api_name="/train")


SAME_BOUND = [("learning_rate", 0), ("batch_size", 0), ("block_size", 1), ("seed", -1), ("max_steps", 0),
              ("epochs", -1)]


@pytest.mark.parametrize("name, value", SAME_BOUND, ids=[f"{n}={v}" for n, v in SAME_BOUND])
def test_the_app_and_the_command_line_refuse_a_value_by_the_same_bound(served, tmp_path, capsys, name, value):
    """A number of the form is a setting of the run: refused by the library's bound (minigpt.arguments), said in
    the app's words; the Space's own limits only narrow that bound."""
    import gradio as gr

    import train
    from minigpt.arguments import bound_of
    from space.job_inputs import FORM_SETTINGS, TrainForm, form_bound, prepare_job
    from space.texts import rule_text

    cls, setting, _ = FORM_SETTINGS[name]
    library, app_bound = bound_of(cls, setting), form_bound(name)
    assert not library.allows(value)
    form = TrainForm(**{**TINY, name: value, "length_unit": "epochs" if name == "epochs" else "steps"})
    with pytest.raises(gr.Error) as refused:
        prepare_job(served.ctx, "en", "someone", form)
    assert refused.value.message == f"{WHAT_EN[name]} must be {rule_text(app_bound, 'en')}; got {value}."
    extra = ["--max_steps", "-1"] if setting == "num_train_epochs" else []
    assert train.main([f"--{setting}", str(value), *extra, "--output_dir", str(tmp_path / "out")]) == 2
    assert f"error: --{setting} must be {library}, got {value}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    probes = [-1e9, -1, -0.5, 0, 0.005, 0.5, 1, 2, 7, 8, 300, 1024, 1025, 32768, 100_000, 2**32, 1e12]
    assert all(library.allows(v) for v in probes if app_bound.allows(v))


def test_the_train_endpoint_takes_the_forms_fields_in_order():
    """Gradio passes the form's inputs to /train by position: train()'s parameters are TrainForm's fields."""
    import inspect
    from dataclasses import fields

    from space.job_inputs import TrainForm
    from space.tab_train import train

    names = [f.name for f in fields(TrainForm)]
    assert list(inspect.signature(train).parameters)[1:1 + len(names)] == names == list(TINY)


def test_push_needs_a_token(api):
    with pytest.raises(AppError, match="needs a Hugging Face token"):
        api.predict(None, "me/minigpt", api_name="/push_to_hub")


def test_model_folders_load_from_safetensors_only(served, tmp_path):
    run = next(e for e in served.ctx.registry.runs())
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (pickled / name).write_bytes((Path(run.path) / name).read_bytes())
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded")
    registry = served.ctx.registry
    with pytest.raises(ModelError, match="safetensors"):
        registry.add_dir(pickled)
    with pytest.raises(ModelError, match="safetensors"):
        load_model_dir(pickled)
    entry = registry.add_dir(run.path)
    assert entry.key.startswith("dir/") and registry.get(entry.key)[1] is not None


def test_a_pretrained_gpt2_is_a_model_choice_with_gpt2s_own_logits(served, api):
    from transformers import GPT2LMHeadModel

    from minigpt.loading import count_parameters
    from space.tab_generate import model_facts

    registry = served.ctx.registry
    labels = {key: label for label, key in registry.choices("pt")}
    assert labels["pretrained/tiny-gpt2"].startswith("GPT-2 pré-treinado: tiny-gpt2 (")
    assert [m["kind"] for m in api.predict(api_name="/models")][-1] == "pretrained"
    entry, model, tokenizer = registry.get("pretrained/tiny-gpt2")
    gpt2 = GPT2LMHeadModel.from_pretrained(entry.path).eval()
    ids = tokenizer("Era uma vez a Capitú", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, gpt2(ids).logits, atol=1e-5)
    assert entry.summary["parameters"] == count_parameters(gpt2.config.to_dict()) == gpt2.num_parameters()
    facts = model_facts(served.ctx, "untrained", "pretrained/tiny-gpt2", None)
    assert "random weights: trained on no text at all" in facts and "**tiny-gpt2**" in facts
    text = api.predict("Era uma vez", model="pretrained/tiny-gpt2", strategy="greedy", max_new_tokens=5,
                       api_name="/generate")
    assert text.startswith("Era uma vez") and len(text) > len("Era uma vez")


def test_a_pretrained_name_that_cannot_be_downloaded_gives_a_clear_message(tmp_path, monkeypatch):
    import huggingface_hub

    from space.context import AppContext

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    ctx = AppContext(runs_dir=tmp_path / "runs", hf_token="", pretrained=["minigpt-tests/no-such-gpt2"])
    assert "pretrained/minigpt-tests/no-such-gpt2" in [e.key for e in ctx.registry.entries()]  # listed, not loaded
    with pytest.raises(ModelError, match=r"pre-trained model minigpt-tests/no-such-gpt2 could not be loaded: it "
                                         r"comes from the Hugging Face Hub.*use a model trained in the app"):
        ctx.registry.get("pretrained/minigpt-tests/no-such-gpt2")


def test_the_built_in_corpus_follows_the_visitors_language(served):
    from space.job_inputs import TrainForm, prepare_job
    from space.tab_train import corpus_for_visitor

    ctx = served.ctx
    for lang, corpus in (("pt", "machado"), ("en", "python-reference")):
        assert corpus_for_visitor(SimpleNamespace(headers={"accept-language": lang})) == corpus
        job = prepare_job(ctx, lang, "visitor", TrainForm(**{**TINY, "corpus_source": corpus}))
        assert job.arguments.data.builtin_corpus == corpus and job.settings["corpus"] == f"{corpus} (built-in)"
    job = prepare_job(ctx, "pt", "visitor", TrainForm(**TINY))  # the visitor can switch
    assert job.arguments.data.builtin_corpus == "python-reference"


def test_see_overfitting_trains_on_an_excerpt_and_the_panel_marks_the_turn(served):
    from gradio import Error

    from space.job_inputs import OVERFIT_FORM, TrainForm, prepare_job
    from space.job_views import plot_frames
    from space.tab_train import overfit_values

    ctx = served.ctx
    chosen = {**TINY, **dict(zip(OVERFIT_FORM, overfit_values(True))), "corpus_source": "machado", "overfit": True,
              "early_stopping": True}
    job = prepare_job(ctx, "pt", "visitor", TrainForm(**chosen))
    data, training = job.arguments.data, job.arguments.training
    assert data.builtin_corpus is None and 12_000 <= Path(data.train_file).stat().st_size < 20_000
    assert Path(data.validation_file).read_text().strip() not in Path(data.train_file).read_text()
    assert (job.arguments.model.preset, data.block_size, training["max_steps"]) == ("tiny", 64, 150)
    assert training["eval_steps"] == 1 / 20 and training["early_stopping_patience"] == 3
    assert job.settings["corpus"] == "um trecho de Machado de Assis"
    with pytest.raises(Error, match="trecho de um corpus embutido"):
        prepare_job(ctx, "pt", "visitor", TrainForm(**{**chosen, "corpus_source": "hub", "hub_dataset": "a/b"}))

    # validation lowest at step 60, higher since, while training falls: the plot's line and the status say so
    losses = {20: (4.0, 4.2), 40: (3.5, 3.9), 60: (3.0, 3.7), 80: (2.5, 3.8), 100: (2.0, 4.0)}
    points = [{"step": step, "tokens_seen": step * 1024, "curve": curve, "loss": loss, "perplexity": math.exp(loss)}
              for step, pair in losses.items() for curve, loss in zip(("train", "validation"), pair)]
    snap = replace(job.snapshot(), points=points, state="running", step=100)
    loss_frame, _ = plot_frames(snap, "pt")
    line = loss_frame[loss_frame.curve == "menor perda de validação"]
    assert set(line.step) == {60} and (line.value.min(), line.value.max()) == (2.0, 4.2)
    assert "<b>Sobreajuste:</b> a perda de validação foi a menor no passo 60" in status_html(snap, "pt")
    healthy = replace(snap, points=[p for p in points if p["step"] <= 60])
    assert plot_frames(healthy, "en")[0].query("curve == 'lowest validation loss'").value.isna().all()
    assert "Overfitting" not in status_html(healthy, "en")


def space_limits(served, monkeypatch, **env):
    """The module's app with the limits that these environment variables give (read as the app's start reads them)."""
    from space.budget import Limits

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(served.ctx, "limits", Limits.from_env())
    return served.ctx


def test_a_hub_dataset_is_capped_by_the_spaces_limit(served, monkeypatch):
    from space.job_inputs import TrainForm, prepare_job

    ctx = space_limits(served, monkeypatch, MINIGPT_APP_MAX_HUB_MB="12")
    job = prepare_job(ctx, "en", "visitor", TrainForm(**{**TINY, "corpus_source": "hub",
                                                          "hub_dataset": "someone/some-text"}))
    data = job.arguments.data
    assert (data.dataset_name, data.max_dataset_mb) == ("someone/some-text", 12.0)


def test_minutes_are_the_visitors_default_unit_planned_within_the_spaces_limit(served, monkeypatch):
    """A run in minutes is a planned budget (max_minutes: the schedule decays before it ends), at most
    MINIGPT_APP_MAX_MINUTES; over it, a message that says the limit."""
    import gradio as gr

    from space.job_inputs import TrainForm, prepare_job

    ctx = space_limits(served, monkeypatch, MINIGPT_APP_MAX_MINUTES="3")
    assert TrainForm().length_unit == "minutes"
    job = prepare_job(ctx, "en", "visitor", TrainForm(**{**TINY, "length_unit": "minutes", "minutes": 2.5}))
    assert job.arguments.training["max_minutes"] == 2.5 and job.arguments.training["max_steps"] == -1
    assert job.arguments.training_arguments().max_minutes == 2.5
    for lang, words in (("en", "Minutes must be between 0.1 and 3; got 4"), ("pt", "Minutos")):
        with pytest.raises(gr.Error) as refused:
            prepare_job(ctx, lang, "visitor", TrainForm(**{**TINY, "length_unit": "minutes", "minutes": 4}))
        assert words in refused.value.message
    steps = prepare_job(ctx, "en", "visitor", TrainForm(**TINY))  # steps stay steps
    assert steps.arguments.training["max_minutes"] is None and steps.arguments.training["max_steps"] == 40
