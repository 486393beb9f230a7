"""Every speed path gives the same results as the plain one (timings live in bench/benchmark.py, not here)."""

import json

import pytest
import torch
from conftest import make_tiny_model

import train
from bench import benchmark

SETTINGS = dict(max_new_tokens=24, min_new_tokens=24, do_sample=False)


@pytest.fixture
def prompts():
    return torch.randint(2, 64, (2, 7), generator=torch.Generator().manual_seed(4))


def test_static_cache_generation_equals_dynamic(prompts):
    model = make_tiny_model()
    mask = torch.ones_like(prompts)
    plain = model.generate(prompts, attention_mask=mask, **SETTINGS)
    static = model.generate(prompts, attention_mask=mask, cache_implementation="static", **SETTINGS)
    assert torch.equal(plain, static)


def test_compiled_static_cache_generation_equals_plain(prompts):
    model = make_tiny_model()
    mask = torch.ones_like(prompts)
    compile_config = benchmark.compile_on_any_device()  # the benchmark's compiled line, on this CPU
    scored = dict(SETTINGS, output_logits=True, return_dict_in_generate=True)
    plain = model.generate(prompts, attention_mask=mask, **scored)
    compiled = model.generate(prompts, attention_mask=mask, cache_implementation="static",
                              compile_config=compile_config, **scored)
    assert torch.equal(plain.sequences, compiled.sequences)
    for step, (expected, got) in enumerate(zip(plain.logits, compiled.logits, strict=True)):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4, msg=f"logits at new token {step}")


def test_bf16_weights_generate_the_same_first_tokens(prompts):
    model = make_tiny_model()
    fp32 = model.generate(prompts[:1], max_new_tokens=4, do_sample=False)
    bf16 = model.to(torch.bfloat16).generate(prompts[:1], max_new_tokens=4, do_sample=False)
    assert torch.equal(fp32, bf16)


def test_bf16_autocast_training_loss_is_close_to_fp32(tmp_path):
    corpus = tmp_path / "corpus.txt"
    words = "a small model learns the next token of a text by reading it many times".split()
    corpus.write_text("\n\n".join(" ".join(words[(i + j) % len(words)] for j in range(14)) for i in range(150)))
    losses = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        flags = ["--bf16", "true"] if precision == "bf16" else []
        assert train.main(["--train_file", str(corpus), "--output_dir", str(out), "--preset", "tiny",
                           "--block_size", "32", "--vocab_size", "300", "--max_steps", "30", "--eval_steps", "30",
                           "--save_steps", "30", "--per_device_train_batch_size", "8", "--seed", "3", *flags]) == 0
        losses[precision] = json.loads((out / "all_results.json").read_text())["eval_loss"]
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.03), losses


def test_benchmark_models_have_identical_dimensions():
    dims = benchmark.DIMS["6 x 6 x 384 (base)"]
    mini, gpt2 = benchmark.minigpt(*dims), benchmark.gpt2(*dims)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(mini) == count(gpt2)  # same architecture, same parameter count


def test_int8_weights_keep_the_loss_and_generate(prompts):
    from minigpt.quantization import quantize_int8

    model = make_tiny_model()
    quantized = quantize_int8(model)
    assert not isinstance(quantized.model.layers[0].mlp.up_proj, torch.nn.Linear)  # really replaced
    assert isinstance(model.model.layers[0].mlp.up_proj, torch.nn.Linear)  # the original is untouched
    ids = torch.randint(2, 64, (4, 32), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        fp32_loss, int8_loss = model(ids, labels=ids).loss, quantized(ids, labels=ids).loss
    assert int8_loss.item() == pytest.approx(fp32_loss.item(), rel=0.02)
    out = quantized.generate(prompts, attention_mask=torch.ones_like(prompts), **SETTINGS)
    assert out.shape == (2, prompts.shape[1] + SETTINGS["max_new_tokens"])
