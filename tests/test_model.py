import json
import os

import pytest
import torch
from conftest import VOCAB, make_tiny_model
from datasets import Dataset
from transformers import AutoConfig, AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

from configuration_minigpt import MiniGPTConfig
from modeling_minigpt import MiniGPTForCausalLM, MiniGPTModel


def test_labels_loss_is_shifted_cross_entropy(tiny_model):
    ids = torch.randint(2, VOCAB, (3, 12))
    labels = ids.clone()
    labels[0, :4] = -100  # ignored positions must not count
    out = tiny_model(ids, labels=labels)
    expected = torch.nn.functional.cross_entropy(
        out.logits[:, :-1].reshape(-1, VOCAB), labels[:, 1:].reshape(-1), ignore_index=-100
    )
    torch.testing.assert_close(out.loss, expected)


def test_lm_head_is_tied_and_untying_works():
    tied = make_tiny_model()
    assert tied.lm_head.weight.data_ptr() == tied.model.embed_tokens.weight.data_ptr()
    untied = make_tiny_model(tie_word_embeddings=False)
    assert untied.lm_head.weight.data_ptr() != untied.model.embed_tokens.weight.data_ptr()


def test_gpt2_style_init_scales_residual_projections():
    torch.manual_seed(0)
    config = MiniGPTConfig(vocab_size=100, hidden_size=256, num_hidden_layers=8, num_attention_heads=4)
    model = MiniGPTForCausalLM(config)
    block = model.model.layers[0]
    scaled = 0.02 / (2 * 8) ** 0.5
    assert block.self_attn.o_proj.weight.std().item() == pytest.approx(scaled, rel=0.1)
    assert block.mlp.down_proj.weight.std().item() == pytest.approx(scaled, rel=0.1)
    assert block.self_attn.qkv_proj.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert torch.all(block.self_attn.qkv_proj.bias == 0)


def test_eager_equals_sdpa_with_and_without_padding():
    eager, sdpa = make_tiny_model(attn_implementation="eager"), make_tiny_model(attn_implementation="sdpa")
    ids = torch.randint(2, VOCAB, (2, 10))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    for attention_mask in (None, mask):
        real = (attention_mask if attention_mask is not None else torch.ones_like(ids)).bool()  # pads are garbage
        torch.testing.assert_close(eager(ids, attention_mask=attention_mask).logits[real],
                                   sdpa(ids, attention_mask=attention_mask).logits[real], atol=1e-5, rtol=1e-5)


def test_cache_keyword_and_its_old_name_give_the_same_step(tiny_model):
    ids = torch.randint(2, VOCAB, (1, 8))
    full = tiny_model(ids).logits[:, -1]
    prefix = tiny_model(ids[:, :-1], use_cache=True)
    with_new_name = tiny_model(ids[:, -1:], cache=prefix.cache).logits[:, -1]
    torch.testing.assert_close(with_new_name, full, atol=1e-5, rtol=1e-5)
    prefix = tiny_model(ids[:, :-1], use_cache=True)
    with_old_name = tiny_model(ids[:, -1:], past_key_values=prefix.cache).logits[:, -1]
    torch.testing.assert_close(with_old_name, full, atol=1e-5, rtol=1e-5)


def test_logits_to_keep_and_outputs(tiny_model):
    ids = torch.randint(2, VOCAB, (2, 9))
    full = tiny_model(ids)
    last = tiny_model(ids, logits_to_keep=1)
    assert last.logits.shape == (2, 1, VOCAB)
    torch.testing.assert_close(last.logits, full.logits[:, -1:])
    eager = make_tiny_model(attn_implementation="eager")
    out = eager(ids, output_hidden_states=True, output_attentions=True)
    assert len(out.hidden_states) == eager.config.num_hidden_layers + 1
    assert len(out.attentions) == eager.config.num_hidden_layers
    attn = out.attentions[0]
    assert attn.shape == (2, 4, 9, 9)
    assert torch.all(attn.triu(diagonal=1) == 0), "attention must be causal"
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 4, 9))


def test_context_overflow_is_a_clear_error(tiny_model):
    with pytest.raises(ValueError, match="exceed the context of 64"):
        tiny_model(torch.randint(2, VOCAB, (1, 65)))


def test_gradient_checkpointing_gives_the_same_gradients():
    grads = []
    for checkpointing in (False, True):
        model = make_tiny_model().train()
        if checkpointing:
            model.gradient_checkpointing_enable()
        ids = torch.randint(2, VOCAB, (2, 16), generator=torch.Generator().manual_seed(3))
        model(ids, labels=ids).loss.backward()
        grads.append(model.model.layers[0].self_attn.qkv_proj.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_auto_classes_in_process():
    config = AutoConfig.for_model("minigpt", vocab_size=50, hidden_size=32, num_attention_heads=4)
    assert isinstance(config, MiniGPTConfig)
    assert isinstance(AutoModelForCausalLM.from_config(config), MiniGPTForCausalLM)


def test_save_pretrained_writes_remote_code_and_safetensors_only(tmp_path):
    """The folder other people load (tests/test_portability.py loads one in fresh processes, under three
    transformers versions)."""
    model = make_tiny_model()
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    files = sorted(os.listdir(model_dir))
    assert {"model.safetensors", "config.json", "generation_config.json",
            "configuration_minigpt.py", "modeling_minigpt.py"} <= set(files)
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl"))], files
    config = json.loads((model_dir / "config.json").read_text())
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_minigpt.MiniGPTForCausalLM"
    assert config["auto_map"]["AutoConfig"] == "configuration_minigpt.MiniGPTConfig"
    ids = torch.tensor([[5, 9, 2, 33, 7, 12]])
    torch.testing.assert_close(MiniGPTForCausalLM.from_pretrained(model_dir)(ids).logits, model(ids).logits)


def _tiny_gpt2(activation="gelu_new"):
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=80, n_positions=48, n_embd=48, n_layer=3, n_head=4,
                        activation_function=activation, bos_token_id=1, eos_token_id=1)
    gpt2 = GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # non-trivial biases and norms, so that a wrong mapping shows
        for name, param in gpt2.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                param.add_(torch.randn_like(param) * 0.1)
    return gpt2


@pytest.mark.parametrize("activation", ["gelu_new", "gelu"])
def test_from_gpt2_gives_identical_logits_and_generations(activation):
    gpt2 = _tiny_gpt2(activation)
    mini = MiniGPTForCausalLM.from_gpt2(gpt2)
    ids = torch.randint(2, 80, (2, 20))
    torch.testing.assert_close(mini(ids).logits, gpt2(ids).logits, atol=1e-5, rtol=1e-5)
    prompt = ids[:1, :5]
    kwargs = dict(max_new_tokens=25, do_sample=False, pad_token_id=0)
    assert torch.equal(mini.generate(prompt, **kwargs), gpt2.generate(prompt, **kwargs))


@pytest.mark.parametrize("overrides", [{}, {"tie_word_embeddings": False}, {"hidden_act": "relu"}])
def test_to_gpt2_gives_identical_logits_and_generations(overrides):
    mini = make_tiny_model(**overrides)
    gpt2 = mini.to_gpt2()
    assert isinstance(gpt2, GPT2LMHeadModel) and not gpt2.training
    assert (gpt2.lm_head.weight is gpt2.transformer.wte.weight) == mini.config.tie_word_embeddings
    ids = torch.randint(2, VOCAB, (2, 20))
    torch.testing.assert_close(gpt2(ids).logits, mini(ids).logits, atol=1e-5, rtol=1e-5)
    kwargs = dict(max_new_tokens=25, do_sample=False, pad_token_id=0)
    assert torch.equal(gpt2.generate(ids[:1, :5], **kwargs), mini.generate(ids[:1, :5], **kwargs))
    torch.testing.assert_close(MiniGPTForCausalLM.from_gpt2(gpt2)(ids).logits, mini(ids).logits)  # and back


@pytest.mark.parametrize("overrides, message", [({"attention_bias": False}, "attention_bias=False has no GPT-2"),
                                                ({"mlp_bias": False}, "mlp_bias=False has no GPT-2"),
                                                ({"hidden_act": "gelu_fast"}, "hidden_act='gelu_fast' has no GPT-2")])
def test_to_gpt2_names_the_setting_gpt2_does_not_have(overrides, message):
    with pytest.raises(ValueError, match=message):
        make_tiny_model(**overrides).to_gpt2()


def test_from_gpt2_accepts_a_local_directory(tmp_path):
    gpt2 = _tiny_gpt2()
    gpt2.save_pretrained(tmp_path)
    mini = MiniGPTForCausalLM.from_gpt2(str(tmp_path))
    ids = torch.randint(2, 80, (1, 10))
    torch.testing.assert_close(mini(ids).logits, gpt2(ids).logits, atol=1e-5, rtol=1e-5)


def test_base_model_returns_hidden_states():
    model = MiniGPTModel(MiniGPTConfig(vocab_size=50, hidden_size=32, num_attention_heads=4, num_hidden_layers=1))
    assert model(torch.randint(0, 50, (2, 7))).last_hidden_state.shape == (2, 7, 32)


def _train_one_step(tmp_path, batch_size, accumulation):
    model = make_tiny_model(seed=0).train()
    g = torch.Generator().manual_seed(0)
    rows = []
    for i in range(4):  # different numbers of ignored labels per row: a mean of means would be wrong
        ids = torch.randint(2, VOCAB, (16,), generator=g)
        labels = ids.clone()
        labels[: 3 * i] = -100
        rows.append({"input_ids": ids.tolist(), "labels": labels.tolist()})
    args = TrainingArguments(
        output_dir=str(tmp_path / f"b{batch_size}x{accumulation}"), per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=accumulation, max_steps=1, learning_rate=0.1, optim="sgd",
        lr_scheduler_type="constant", logging_steps=1, save_strategy="no", report_to="none", use_cpu=True,
        max_grad_norm=0.0, seed=0, data_seed=0, dataloader_drop_last=False,
    )
    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_list(rows))
    trainer.train()
    loss = next(entry["loss"] for entry in trainer.state.log_history if "loss" in entry)
    return loss, model.model.layers[0].self_attn.qkv_proj.weight.detach().clone()


def test_gradient_accumulation_matches_one_big_batch(tmp_path):
    # Trainer shuffles with a seeded sampler; both runs see the same four rows in the same step.
    loss_big, weight_big = _train_one_step(tmp_path, batch_size=4, accumulation=1)
    loss_acc, weight_acc = _train_one_step(tmp_path, batch_size=2, accumulation=2)
    assert loss_acc == pytest.approx(loss_big, rel=1e-4)
    torch.testing.assert_close(weight_acc, weight_big, atol=1e-6, rtol=1e-5)
