"""Every speed path gives the same results as the plain one (timings live in bench/benchmark.py, not here)."""

import pytest
import torch
from conftest import make_tiny_model

from bench import benchmark
from minigpt.compiled_generation import MatVecLinear, compiled_generation
from modeling_minigpt import MiniGPTForCausalLM

SETTINGS = {"max_new_tokens": 24, "min_new_tokens": 24, "do_sample": False}


@pytest.fixture
def prompts():
    return torch.randint(2, 64, (2, 7), generator=torch.Generator().manual_seed(4))


def test_static_cache_generation_equals_dynamic(prompts):
    model = make_tiny_model()
    mask = torch.ones_like(prompts)
    plain = model.generate(prompts, attention_mask=mask, **SETTINGS)
    static = model.generate(prompts, attention_mask=mask, cache_implementation="static", **SETTINGS)
    assert torch.equal(plain, static)


def test_compiled_generation_equals_plain(prompts):
    """Static cache, the compiled step and the fused products together (one compile: without the fused products
    the same path only leaves nn.Linear as it is)."""
    model = make_tiny_model()
    mask = torch.ones_like(prompts[:1])
    scored = dict(SETTINGS, output_logits=True, return_dict_in_generate=True)
    plain = model.generate(prompts[:1], attention_mask=mask, **scored)
    # batch 1: the decoding step's products are one row each
    kwargs = compiled_generation(model)
    assert isinstance(model.model.layers[0].mlp.up_proj, MatVecLinear)
    compiled = model.generate(prompts[:1], attention_mask=mask, **kwargs, **scored)
    assert torch.equal(plain.sequences, compiled.sequences)
    for step, (expected, got) in enumerate(zip(plain.logits, compiled.logits, strict=True)):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4, msg=f"logits at new token {step}")


def traced_calls(module, x) -> set[str]:
    """The names of the functions and methods in the graph that torch.compile traces for module(x)."""
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    torch.compile(module, backend=backend, fullgraph=True)(x)
    return {getattr(n.target, "__name__", str(n.target)) for g in graphs for n in g.graph.nodes
            if n.op in ("call_function", "call_method")}


def test_mat_vec_linear_is_a_fused_reduction_only_when_compiled_for_one_row():
    torch.manual_seed(0)
    linear = torch.nn.Linear(48, 40)
    fast = torch.nn.Linear(48, 40)
    fast.load_state_dict(linear.state_dict())
    compiled_generation(fast)
    one_row, rows = torch.randn(1, 1, 48), torch.randn(1, 5, 48)
    with torch.no_grad():
        assert torch.equal(fast(one_row), linear(one_row))  # eager: nn.Linear's own kernel, bit for bit
        assert torch.equal(fast(rows), linear(rows))
        assert "linear" in traced_calls(linear, one_row)
        assert {"mul", "sum"} <= traced_calls(fast, one_row) and "linear" not in traced_calls(fast, one_row)
        assert "linear" in traced_calls(fast, rows)  # the prompt keeps the matrix product
        torch.testing.assert_close(torch.compile(fast)(one_row), linear(one_row), rtol=1e-5, atol=1e-5)


def test_compiled_generation_keeps_the_saved_model(tmp_path):
    model = make_tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    compiled_generation(model)
    assert model.lm_head.weight is model.model.embed_tokens.weight  # still tied
    model.save_pretrained(tmp_path)
    loaded = MiniGPTForCausalLM.from_pretrained(tmp_path)
    assert type(loaded.model.layers[0].self_attn.qkv_proj) is torch.nn.Linear  # the speed path is not saved
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, before[name]), name


def test_bf16_weights_generate_the_same_first_tokens(prompts):
    model = make_tiny_model()
    fp32 = model.generate(prompts[:1], max_new_tokens=4, do_sample=False)
    bf16 = model.to(torch.bfloat16).generate(prompts[:1], max_new_tokens=4, do_sample=False)
    assert torch.equal(fp32, bf16)


def test_benchmark_models_have_identical_dimensions():
    dims = benchmark.DIMS["6 x 6 x 384 (base)"]
    mini, gpt2 = benchmark.minigpt(*dims), benchmark.gpt2(*dims)
    assert sum(p.numel() for p in mini.parameters()) == sum(p.numel() for p in gpt2.parameters())  # same architecture, same parameter count


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
