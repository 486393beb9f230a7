"""minigpt.teaching: the decoding settings the app uses, the before/after distributions and the surprise view."""

import math
import threading

import pytest
import torch
from transformers import GenerationConfig

from configuration_minigpt import MiniGPTConfig
from minigpt.corpus import load_text_datasets
from minigpt.tokenizer_training import train_tokenizer
from minigpt.teaching import (
    STRATEGIES,
    STRATEGY_KNOBS,
    DecodingSettings,
    SeededSampler,
    TeachingError,
    display_token,
    display_tokens,
    next_token_distribution,
    next_token_processors,
    token_surprises,
)
from modeling_minigpt import MiniGPTForCausalLM


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(load_text_datasets(builtin_corpus_name="python-reference")["train"], kind="bpe", vocab_size=400)


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    config = MiniGPTConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           max_position_embeddings=48, bos_token_id=tokenizer.bos_token_id,
                           eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model = MiniGPTForCausalLM(config)
    with torch.no_grad():  # a spread like a trained model's, not the near-uniform default init
        model.model.embed_tokens.weight.normal_(0, 0.3)
    return model.eval()


def generate(model, tokenizer, settings: DecodingSettings, prompt="The value of") -> str:
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    out = model.generate(ids, attention_mask=torch.ones_like(ids), **settings.generate_kwargs(tokenizer))
    return tokenizer.decode(out[0, ids.shape[1]:])


def test_processors_are_generates_own_classes_in_generates_order(model):
    config = GenerationConfig(do_sample=True, temperature=0.7, top_k=5, top_p=0.9, repetition_penalty=1.3)
    theirs = model._get_logits_processor(generation_config=config, input_ids_seq_length=3, device="cpu")
    ours = next_token_processors(temperature=0.7, top_k=5, top_p=0.9, repetition_penalty=1.3)
    assert [type(p).__name__ for p in ours] == [type(p).__name__ for p in theirs] == [
        "RepetitionPenaltyLogitsProcessor", "TemperatureLogitsWarper", "TopKLogitsWarper", "TopPLogitsWarper"]
    ids = torch.tensor([[5, 6, 7]])
    scores = torch.randn(1, model.config.vocab_size)
    assert torch.equal(ours(ids, scores.clone()), theirs(ids, scores.clone()))
    assert len(next_token_processors()) == 0  # neutral values: nothing, as in generate()


def test_sampled_generate_runs_repetition_penalty_then_our_chain_and_draws_last(model, tokenizer):
    """generate() puts our logits_processor after its own processors: the full list it runs must be
    penalty -> temperature -> top-k -> SeededSampler, and no second temperature/top-k of its own."""
    seen = []
    original = model._get_logits_processor

    def spy(*args, **kwargs):
        processors = original(*args, **kwargs)
        seen.append([type(p).__name__ for p in processors])
        return processors

    model._get_logits_processor = spy
    try:
        generate(model, tokenizer, DecodingSettings(strategy="top_k", temperature=0.7, top_k=5,
                                                    repetition_penalty=1.2, max_new_tokens=3))
    finally:
        del model._get_logits_processor
    assert seen == [["RepetitionPenaltyLogitsProcessor", "TemperatureLogitsWarper", "TopKLogitsWarper",
                     "SeededSampler"]]


def test_distribution_before_after_and_cut_tokens(model, tokenizer):
    view = next_token_distribution(model, tokenizer, "The value of", temperature=1.0, top_k=3, top_p=1.0, top_n=10)
    assert view.kept_count == 3
    kept = [r for r in view.rows if r.kept]
    assert [r.rank for r in kept] == [1, 2, 3]
    assert all(r.p_after == 0 for r in view.rows if not r.kept)
    assert sum(r.p_after for r in kept) == pytest.approx(1.0, abs=1e-5)
    # top-k at temperature 1 renormalises: p_after = p_before / (mass of the kept tokens)
    assert view.kept_mass == pytest.approx(sum(r.p_before for r in kept), rel=1e-5)
    for r in kept:
        assert r.p_after == pytest.approx(r.p_before / view.kept_mass, rel=1e-4)
    ids = tokenizer("The value of", return_tensors="pt").input_ids
    with torch.no_grad():
        p = torch.softmax(model(ids).logits[0, -1], -1)
    assert view.rows[0].p_before == pytest.approx(float(p.max()), rel=1e-5)
    assert view.entropy_after_bits < view.entropy_before_bits


def test_temperature_sharpens_or_flattens_without_cutting(model, tokenizer):
    cold = next_token_distribution(model, tokenizer, "The value of", temperature=0.5)
    hot = next_token_distribution(model, tokenizer, "The value of", temperature=2.0)
    assert cold.kept_count == hot.kept_count == model.config.vocab_size
    assert cold.entropy_after_bits < cold.entropy_before_bits < hot.entropy_after_bits
    assert cold.rows[0].p_after > cold.rows[0].p_before > hot.rows[0].p_after


def test_top_p_keeps_the_smallest_set_reaching_p(model, tokenizer):
    view = next_token_distribution(model, tokenizer, "The value of", top_p=0.5, top_n=60)
    kept = sorted((r for r in view.rows if r.kept), key=lambda r: r.rank)
    mass = sum(r.p_before for r in kept)
    assert mass >= 0.5 - 1e-6
    assert mass - kept[-1].p_before < 0.5  # without its last token the set would fall short


def test_surprise_mean_is_the_models_loss_and_pieces_rebuild_the_text(model, tokenizer):
    text = "The if statement is used — ação, olá!\nx = 1"
    view = token_surprises(model, tokenizer, text)
    assert "".join(t.text for t in view.tokens) == text
    ids = torch.tensor([[tokenizer.bos_token_id, *tokenizer(text).input_ids]])
    with torch.no_grad():
        loss = model(ids, labels=ids).loss.item()
    assert view.cross_entropy_nats == pytest.approx(loss, rel=1e-5)
    assert view.perplexity == pytest.approx(math.exp(loss), rel=1e-5)
    assert view.cross_entropy_bits == pytest.approx(loss / math.log(2), rel=1e-6)
    assert all(t.bits == pytest.approx(-math.log2(t.probability), rel=1e-4) for t in view.tokens)
    assert all(0 <= score <= 1 for _, score in view.highlights())


def test_surprise_truncates_to_the_context(model, tokenizer):
    view = token_surprises(model, tokenizer, "word " * 200)
    assert view.truncated and len(view.tokens) == model.config.max_position_embeddings - 1


@pytest.mark.parametrize("settings, key", [
    (dict(strategy="sample", temperature=0), "temperature"),
    (dict(strategy="top_k", top_k=0), "top_k"),
    (dict(strategy="top_p", top_p=1.5), "top_p"),
    (dict(strategy="beam", num_beams=1), "num_beams"),
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(strategy="nucleus"), ""),
])
def test_contradictory_settings_are_refused_with_a_reason(settings, key):
    with pytest.raises(TeachingError) as error:
        DecodingSettings(**settings).validate()
    assert error.value.key == key and str(error.value)


def test_empty_and_too_long_prompts(model, tokenizer):
    with pytest.raises(TeachingError, match="empty"):
        next_token_distribution(model, tokenizer, "   ")
    with pytest.raises(TeachingError, match="context is 48") as error:
        next_token_distribution(model, tokenizer, "word " * 100)
    assert error.value.key == "prompt_too_long"


def test_greedy_ignores_a_saved_models_sampling_defaults(model, tokenizer):
    model.generation_config = GenerationConfig(do_sample=True, temperature=0.8, top_k=50, top_p=0.95)
    try:
        ids = tokenizer("The value of", return_tensors="pt").input_ids
        expected = ids
        with torch.no_grad():
            for _ in range(8):
                expected = torch.cat([expected, model(expected).logits[:, -1].argmax(-1, keepdim=True)], 1)
        out = model.generate(ids, attention_mask=torch.ones_like(ids),
                             **DecodingSettings(strategy="greedy", repetition_penalty=1.0, max_new_tokens=8)
                             .generate_kwargs(tokenizer))
        assert torch.equal(out, expected)
    finally:
        model.generation_config = GenerationConfig()


def test_every_strategy_generates(model, tokenizer):
    for strategy in STRATEGIES:
        assert generate(model, tokenizer, DecodingSettings(strategy=strategy, max_new_tokens=5, seed=1))


def test_same_seed_same_text_whatever_the_global_rng_does(model, tokenizer):
    settings = dict(strategy="sample", temperature=1.5, max_new_tokens=20, repetition_penalty=1.0)
    torch.manual_seed(123)
    first = generate(model, tokenizer, DecodingSettings(seed=7, **settings))
    results, stop = [], threading.Event()

    def disturb():  # another "visitor": keeps reseeding and drawing from torch's global RNG
        while not stop.is_set():
            torch.manual_seed(int(torch.randint(0, 1000, ())))
            torch.rand(100)

    thread = threading.Thread(target=disturb)
    thread.start()
    try:
        for _ in range(3):
            results.append(generate(model, tokenizer, DecodingSettings(seed=7, **settings)))
    finally:
        stop.set()
        thread.join()
    assert results == [first] * 3
    assert generate(model, tokenizer, DecodingSettings(seed=8, **settings)) != first


def test_seeded_sampler_draws_from_the_distribution():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    sampler = SeededSampler(seed=0)
    counts = torch.zeros(4)
    for _ in range(4000):
        out = sampler(None, probs.log())
        assert torch.isfinite(out).sum() == 1
        counts[out.argmax()] += 1
    assert torch.allclose(counts / counts.sum(), probs[0], atol=0.03)


def test_display_token_shows_whitespace(tokenizer):
    token_id = tokenizer(" the\n", add_special_tokens=False).input_ids[0]
    assert display_token(tokenizer, token_id).startswith("␣")


def test_tokens_show_the_text_they_stand_for_even_a_cut_character():
    """A byte-level tokenizer without merges cuts every accented letter in two bytes: each byte shows as the
    letter it is part of (never GPT-2's byte symbols 'Ã', '©'); alone, a byte shows its value."""
    bytes_only = train_tokenizer(load_text_datasets(builtin_corpus_name="machado", max_train_samples=2)["train"],
                                 kind="bpe", vocab_size=258)
    ids = bytes_only("pé €\n", add_special_tokens=False).input_ids
    assert display_tokens(bytes_only, ids) == ["p", "é[1/2]", "é[2/2]", "␣", "€[1/3]", "€[2/3]", "€[3/3]",
                                               "⏎"]
    assert [display_token(bytes_only, i) for i in ids[:3]] == ["p", "<C3>", "<A9>"]
    char_level = train_tokenizer(load_text_datasets(builtin_corpus_name="machado", max_train_samples=2)["train"],
                                 kind="char", vocab_size=300)
    assert display_tokens(char_level, char_level("pé", add_special_tokens=False).input_ids) == ["p", "é"]


# A value for each knob that differs from DecodingSettings' default and is valid for every strategy.
OTHER_VALUE = {"temperature": 0.5, "top_k": 1, "top_p": 0.05, "seed": 7, "num_beams": 8}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_strategy_uses_exactly_the_knobs_the_app_shows_for_it(model, tokenizer, strategy):
    """The app shows only STRATEGY_KNOBS[strategy] (and the knobs of every strategy): a hidden knob changes
    nothing; each shown one changes the text."""
    base = DecodingSettings(strategy=strategy, max_new_tokens=8, repetition_penalty=1.0, temperature=2.0)
    text = generate(model, tokenizer, base)
    for knob, value in OTHER_VALUE.items():
        changed = generate(model, tokenizer, DecodingSettings(**{**base.__dict__, knob: value}))
        if knob in STRATEGY_KNOBS[strategy]:
            assert changed != text, f"{strategy}: {knob} is shown but changes nothing"
        else:
            assert changed == text, f"{strategy}: {knob} changes the text but is hidden"


def test_beam_search_never_writes_the_same_pair_of_tokens_twice(model, tokenizer):
    """The default beam search bans repeated token pairs: the small model's loops (' of of of') cannot win."""
    ids = tokenizer("The value of", return_tensors="pt").input_ids
    settings = DecodingSettings(strategy="beam", max_new_tokens=30)
    out = model.generate(ids, attention_mask=torch.ones_like(ids), **settings.generate_kwargs(tokenizer))[0].tolist()
    pairs = list(zip(out, out[1:]))
    assert len(out) > ids.shape[1] + 5 and len(set(pairs)) == len(pairs)
