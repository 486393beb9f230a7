"""The decoding strategies the chapter and the app use (greedy, temperature, top-k, top-p, beam search,
repetition penalty), through MiniGPTForCausalLM.generate(): what MiniGPT must get right for them."""

import pytest
import torch
from conftest import EOS, PAD, VOCAB, make_tiny_model

NEW = 20


def greedy(model, ids, **kwargs):
    return model.generate(ids, max_new_tokens=NEW, do_sample=False, **kwargs)


def test_greedy_equals_manual_argmax_loop(tiny_model, prompt):
    ids = prompt
    with torch.no_grad():
        for _ in range(NEW):
            next_id = tiny_model(ids).logits[:, -1].argmax(-1, keepdim=True)
            ids = torch.cat([ids, next_id], dim=1)
            if next_id.item() == EOS:
                break
    assert torch.equal(greedy(tiny_model, prompt), ids)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_kv_cache_equals_no_cache(attn, prompt):
    model = make_tiny_model(attn_implementation=attn)
    assert torch.equal(greedy(model, prompt, use_cache=True), greedy(model, prompt, use_cache=False))


def test_eager_equals_sdpa_generation(prompt):
    eager, sdpa = make_tiny_model(attn_implementation="eager"), make_tiny_model(attn_implementation="sdpa")
    assert torch.equal(greedy(eager, prompt), greedy(sdpa, prompt))


@pytest.mark.parametrize("kwargs", [{}, {"num_beams": 3}])
def test_left_padded_batch_row_equals_the_prompt_alone(tiny_model, kwargs):
    short = torch.tensor([[7, 8, 9]])
    long = torch.tensor([[11, 12, 13, 14, 15, 16]])
    batch = torch.tensor([[PAD, PAD, PAD, 7, 8, 9], [11, 12, 13, 14, 15, 16]])
    mask = (batch != PAD).long()
    settings = dict(max_new_tokens=NEW, min_new_tokens=NEW, **({"do_sample": False} | kwargs))

    together = tiny_model.generate(batch, attention_mask=mask, **settings)
    alone_short = tiny_model.generate(short, **settings)
    alone_long = tiny_model.generate(long, **settings)
    assert torch.equal(together[0, 3:], alone_short[0])
    assert torch.equal(together[1], alone_long[0])


def test_seeded_sampling_is_reproducible_and_varies_with_the_seed(tiny_model, prompt):
    def sample(seed):
        torch.manual_seed(seed)
        return tiny_model.generate(prompt, do_sample=True, max_new_tokens=NEW, min_new_tokens=NEW, top_k=0)

    assert torch.equal(sample(1), sample(1))
    assert any(not torch.equal(sample(1), sample(s)) for s in (2, 3, 4))


def test_top_k_1_sampling_equals_greedy(tiny_model, prompt):
    torch.manual_seed(0)
    sampled = tiny_model.generate(prompt, do_sample=True, top_k=1, max_new_tokens=NEW)
    assert torch.equal(sampled, greedy(tiny_model, prompt))


def _first_step_support(model, prompt, **kwargs):
    """The set of tokens the first sampled step ever picks over many draws."""
    torch.manual_seed(0)
    picks = model.generate(prompt.repeat(400, 1), do_sample=True, max_new_tokens=1, min_new_tokens=1, **kwargs)
    return set(picks[:, -1].tolist())


def _first_step_probs(model, prompt):
    with torch.no_grad():
        return model(prompt).logits[0, -1].softmax(-1)


def test_top_k_keeps_only_the_k_most_likely(tiny_model, prompt):
    probs = _first_step_probs(tiny_model, prompt)
    allowed = set(probs.topk(3).indices.tolist())
    support = _first_step_support(tiny_model, prompt, top_k=3)
    assert support <= allowed and len(support) >= 2


def test_top_p_keeps_the_smallest_nucleus(tiny_model, prompt):
    probs = _first_step_probs(tiny_model, prompt)
    sorted_probs, order = probs.sort(descending=True)
    nucleus_size = int((sorted_probs.cumsum(0) < 0.6).sum()) + 1
    allowed = set(order[:nucleus_size].tolist())
    support = _first_step_support(tiny_model, prompt, top_p=0.6, top_k=0)
    assert support <= allowed


def test_low_temperature_approaches_greedy_and_high_temperature_spreads(tiny_model, prompt):
    greedy_next = greedy(tiny_model, prompt)[0, prompt.shape[1]].item()
    assert _first_step_support(tiny_model, prompt, temperature=0.01, top_k=0) == {greedy_next}
    assert len(_first_step_support(tiny_model, prompt, temperature=5.0, top_k=0)) > len(
        _first_step_support(tiny_model, prompt, temperature=0.5, top_k=0))


def test_beam_search_scores_at_least_as_well_as_greedy(tiny_model, prompt):
    def log_prob(sequence):
        with torch.no_grad():
            logp = tiny_model(sequence).logits[0, :-1].log_softmax(-1)
        new = sequence[0, prompt.shape[1]:]
        return logp[prompt.shape[1] - 1:].gather(-1, new[:, None]).sum().item()

    settings = dict(max_new_tokens=8, min_new_tokens=8, do_sample=False)
    beams = tiny_model.generate(prompt, num_beams=4, length_penalty=0.0, **settings)
    assert log_prob(beams) >= log_prob(tiny_model.generate(prompt, **settings)) - 1e-5
    returned = tiny_model.generate(prompt, num_beams=4, num_return_sequences=4, **settings)
    assert returned.shape[0] == 4 and len({tuple(r.tolist()) for r in returned}) == 4


def test_repetition_penalty_reduces_repeats(tiny_model, prompt):
    def repeats(sequence):
        new = sequence[0, prompt.shape[1]:].tolist()
        return len(new) - len(set(new))

    settings = dict(max_new_tokens=40, min_new_tokens=40, do_sample=False)
    plain = tiny_model.generate(prompt, **settings)
    penalised = tiny_model.generate(prompt, repetition_penalty=10.0, **settings)
    assert repeats(penalised) < repeats(plain)


def test_eos_stops_its_row_and_pads_the_rest(tiny_model):
    batch = torch.randint(2, VOCAB, (2, 4), generator=torch.Generator().manual_seed(0))
    # sequence_bias makes EOS certain right after row 0's last prompt token; row 1 runs on.
    out = tiny_model.generate(batch, attention_mask=torch.ones_like(batch), max_new_tokens=NEW, do_sample=False,
                              sequence_bias={(batch[0, -1].item(), EOS): 100.0})
    row0 = out[0, 4:].tolist()
    assert row0[0] == EOS
    assert all(t == PAD for t in row0[1:]), "after eos a finished row must only be padded"
    assert greedy(tiny_model, batch[:1]).shape[1] > 5  # without the bias row 0 keeps going
