"""Decoding made visible: the chapter's cross entropy, perplexity and sampling strategies, computed with the model.

    DecodingSettings       greedy / sampling / top-k / top-p / beam search -> generate() keyword arguments
    next_token_processors  transformers' own logits processors, in generate()'s order:
                           RepetitionPenalty -> Temperature -> TopK -> TopP
    next_token_distribution  the next-token probabilities before and after those processors (cut tokens marked)
    token_surprises        each token's surprise -log p (cross entropy, nats and bits) and the text's perplexity
    SeededSampler          the last logits processor of a sampled generate(): draws with the request's own
                           torch.Generator, so a seed gives the same text whatever other threads do with torch's
                           global RNG (transformers' generate() has no per-call generator)

Used by the app's Generate, Compare and Probabilities tabs; free of any UI code, so tests and notebooks use it too.
"""

import bisect
import itertools
import math
import re
from dataclasses import asdict, dataclass

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    StoppingCriteria,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)
from transformers.convert_slow_tokenizer import bytes_to_unicode

STRATEGIES = ("greedy", "sample", "top_k", "top_p", "beam")
SAMPLED = ("sample", "top_k", "top_p")
# The knobs each strategy uses beyond those of every strategy (repetition_penalty, max_new_tokens): a UI shows
# only these.
STRATEGY_KNOBS = {
    "greedy": (),
    "sample": ("temperature", "seed"),
    "top_k": ("temperature", "top_k", "seed"),
    "top_p": ("temperature", "top_p", "seed"),
    "beam": ("num_beams",),
}


class TeachingError(ValueError):
    """Bad input for a decoding or inspection call: one line that says what to change. `key` and `values` name
    the problem so that a UI can say it in its own language."""

    def __init__(self, message: str, key: str = "", **values):
        super().__init__(message)
        self.key = key
        self.values = values


# ----------------------------------------------------------------------------------------------------------------
# Decoding settings -> generate()


def next_token_processors(
    temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, repetition_penalty: float = 1.0
) -> LogitsProcessorList:
    """The processors generate() builds for these settings, same classes, same order (generation/utils.py
    `_get_logits_processor`): repetition penalty, then the sampling warpers temperature -> top-k -> top-p.
    A neutral value (temperature 1, top_k 0, top_p 1, penalty 1) leaves its processor out, as generate() does."""
    processors = LogitsProcessorList()
    if repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(repetition_penalty))
    processors.extend(sampling_warpers(temperature, top_k, top_p))
    return processors


def sampling_warpers(temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> LogitsProcessorList:
    warpers = LogitsProcessorList()
    if temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(temperature))
    if top_k:
        warpers.append(TopKLogitsWarper(top_k=top_k, min_tokens_to_keep=1))
    if top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p=top_p, min_tokens_to_keep=1))
    return warpers


class SeededSampler(LogitsProcessor):
    """Runs last: draws the next token from the processed distribution with its own torch.Generator and leaves
    only that token (every other score -inf). generate()'s own multinomial then has a single choice.

    Why: generate() samples with torch's global RNG, which every thread shares (other generations, a training's
    set_seed and data shuffling); a per-request generator makes the seed alone decide the text."""

    def __init__(self, seed: int):
        self.seed = int(seed)
        self._generators: dict[torch.device, torch.Generator] = {}

    def _generator(self, device: torch.device) -> torch.Generator:
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[device]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        probs = torch.softmax(scores.float(), dim=-1)
        chosen = torch.multinomial(probs, num_samples=1, generator=self._generator(scores.device))
        only = torch.full_like(scores, -math.inf)
        return only.scatter_(1, chosen, 0.0)


class StopOnEvent(StoppingCriteria):
    """Ends generate() at the next token once any of `events` is set (a cancelled request, a closed page)."""

    def __init__(self, *events):
        self.events = [event for event in events if event is not None]

    def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
        stop = any(event.is_set() for event in self.events)
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


@dataclass
class DecodingSettings:
    """One decoding strategy and its knobs; `generate_kwargs()` turns it into generate() arguments."""

    strategy: str = "top_p"
    temperature: float = 0.8
    top_k: int = 50
    top_p: float = 0.95
    repetition_penalty: float = 1.1
    max_new_tokens: int = 60
    seed: int = 0
    num_beams: int = 4
    # beam search: no pair of tokens twice. Without it the beams of a small model agree on the likeliest loop
    # (blank lines, one phrase over and over): the few best continuations are all repetitions. Measured on a
    # tiny Machado run (120 steps): 59 of 60 new tokens were line breaks without it, 25 with 3, 14 with 2.
    no_repeat_ngram_size: int = 2

    def validate(self) -> "DecodingSettings":
        """Check the combination; raise TeachingError with what to change."""
        if self.strategy not in STRATEGIES:
            raise TeachingError(f"unknown strategy {self.strategy!r}: use one of {', '.join(STRATEGIES)}")
        if not 1 <= self.max_new_tokens <= 4096:
            raise TeachingError(f"max_new_tokens must be between 1 and 4096, got {self.max_new_tokens}",
                                "max_new_tokens", value=self.max_new_tokens)
        if not self.repetition_penalty > 0:
            raise TeachingError(f"repetition_penalty must be positive (1 = off), got {self.repetition_penalty}")
        if self.strategy in SAMPLED and not self.temperature > 0:
            raise TeachingError(f"temperature {self.temperature} with sampling: it must be above 0 "
                                "(temperature 0 is greedy decoding: choose the greedy strategy)",
                                "temperature", value=self.temperature)
        if self.strategy == "top_k" and not self.top_k >= 1:
            raise TeachingError(f"top-k sampling needs top_k of at least 1, got {self.top_k}", "top_k",
                                value=self.top_k)
        if self.strategy == "top_p" and not 0 < self.top_p <= 1:
            raise TeachingError(f"top-p sampling needs 0 < top_p <= 1, got {self.top_p}", "top_p", value=self.top_p)
        if self.strategy == "beam" and not 2 <= self.num_beams <= 16:
            raise TeachingError(f"beam search needs num_beams between 2 and 16, got {self.num_beams}", "num_beams",
                                value=self.num_beams)
        if self.strategy in SAMPLED and not 0 <= self.seed < 2**63:
            raise TeachingError(f"seed must be between 0 and 2**63 - 1, got {self.seed}")
        return self

    @property
    def samples(self) -> bool:
        return self.strategy in SAMPLED

    def warpers(self) -> LogitsProcessorList:
        """The sampling warpers of this strategy (none for greedy and beam search)."""
        if not self.samples:
            return LogitsProcessorList()
        return sampling_warpers(self.temperature, self.top_k if self.strategy == "top_k" else 0,
                                self.top_p if self.strategy == "top_p" else 1.0)

    def generate_kwargs(self, tokenizer) -> dict:
        """Keyword arguments for model.generate(). Every knob is explicit, so a saved model's own
        generation_config (temperature 0.8, top-k 50, ...) never leaks into another strategy.

        Sampled strategies: generate() itself adds the repetition penalty; the warpers and the SeededSampler are
        passed as logits_processor, which generate() appends after its own processors: the same order as its own
        warpers would have (see next_token_processors), with the draw made by the request's generator."""
        self.validate()
        kwargs = dict(
            max_new_tokens=self.max_new_tokens, repetition_penalty=self.repetition_penalty,
            temperature=1.0, top_k=50, top_p=1.0, num_beams=1, do_sample=False,  # top_k 50: unused, no warning
            no_repeat_ngram_size=0,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
            bos_token_id=tokenizer.bos_token_id,
        )
        if self.strategy == "beam":
            kwargs.update(num_beams=self.num_beams, early_stopping=True,
                          no_repeat_ngram_size=self.no_repeat_ngram_size)
        elif self.samples:
            kwargs.update(do_sample=True, top_k=0,  # 0: generate() adds no warper of its own
                          logits_processor=LogitsProcessorList([*self.warpers(), SeededSampler(self.seed)]))
        return kwargs


def default_sampling() -> dict:
    """generate()'s sampling for a saved model (its generation_config.json) and for the samples shown while it
    trains: the defaults of DecodingSettings, with top-k and top-p together."""
    d = DecodingSettings()
    return {"do_sample": True, "temperature": d.temperature, "top_k": d.top_k, "top_p": d.top_p,
            "repetition_penalty": d.repetition_penalty}


def describe_sampling() -> str:
    """default_sampling() in words: "temperature 0.8, top-k 50, top-p 0.95, repetition penalty 1.1"."""
    s = default_sampling()
    return (f"temperature {s['temperature']:g}, top-k {s['top_k']}, top-p {s['top_p']:g}, "
            f"repetition penalty {s['repetition_penalty']:g}")


def encode_prompt(tokenizer, prompt: str, context: int, reserve: int = 1) -> torch.LongTensor:
    """(1, n) ids of a non-empty prompt that leaves `reserve` positions of the context free."""
    if not prompt or not prompt.strip():
        raise TeachingError("the prompt is empty: type a few words for the model to continue", "empty_prompt")
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
    if ids.shape[1] + reserve > context:
        raise TeachingError(f"the prompt has {ids.shape[1]} tokens but the model's context is {context}: "
                            f"shorten it to at most {context - reserve} tokens", "prompt_too_long",
                            tokens=ids.shape[1], context=context, limit=context - reserve)
    return ids


# ----------------------------------------------------------------------------------------------------------------
# Next-token distribution, before and after the processors


_BYTE_OF = {symbol: byte for byte, symbol in bytes_to_unicode().items()}  # byte-level BPE's symbols -> bytes


def token_bytes(tokenizer, token_id: int) -> bytes:
    """The bytes of text a token stands for (a byte-level BPE token may hold part of a character)."""
    decoder = getattr(tokenizer, "backend_tokenizer", None) and tokenizer.backend_tokenizer.decoder
    symbols = tokenizer.convert_ids_to_tokens(token_id)
    if type(decoder).__name__ == "ByteLevel" and symbols and all(c in _BYTE_OF for c in symbols):
        return bytes(_BYTE_OF[c] for c in symbols)
    return tokenizer.decode([token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False).encode()


def _visible(text: str) -> str:
    """Whitespace made visible (␣ ⏎ ⇥ ␍); a byte that is not a whole character as <C3>."""
    text = re.sub("[\udc80-\udcff]", lambda m: f"<{ord(m.group()) - 0xDC00:02X}>", text)
    return text.replace(" ", "␣").replace("\n", "⏎").replace("\t", "⇥").replace("\r", "␍")


def display_token(tokenizer, token_id: int) -> str:
    """A token as a learner can read it: the text it stands for, spaces as ␣, newlines as ⏎, tabs as ⇥; a byte
    that is only part of a character (a byte-level token cut inside "é") as its value, <C3>."""
    return _visible(token_bytes(tokenizer, token_id).decode("utf-8", "surrogateescape")) or f"<{token_id}>"


def display_tokens(tokenizer, ids: list[int]) -> list[str]:
    """The tokens of a text as a learner can read them (see display_token); a character cut across tokens
    shows in each of them, with which part it is: "pé" in bytes is 'p', 'é[1/2]', 'é[2/2]'."""
    pieces = [token_bytes(tokenizer, token_id) for token_id in ids]
    ends = list(itertools.accumulate(len(piece) for piece in pieces))  # token i holds bytes [ends[i-1], ends[i])
    shown = [""] * len(ids)
    first = 0
    for char in b"".join(pieces).decode("utf-8", "surrogateescape"):
        last = first + (1 if "\udc80" <= char <= "\udcff" else len(char.encode()))
        holders = range(bisect.bisect_right(ends, first), bisect.bisect_left(ends, last) + 1)
        for part, token in enumerate(holders, start=1):
            shown[token] += _visible(char) + (f"[{part}/{len(holders)}]" if len(holders) > 1 else "")
        first = last
    return shown


@dataclass
class TokenProbability:
    rank: int  # 1 = most likely before processing
    token_id: int
    token: str
    logit: float
    p_before: float
    p_after: float
    kept: bool


@dataclass
class NextTokenView:
    prompt_tokens: int
    vocab_size: int
    rows: list[TokenProbability]
    kept_count: int  # tokens with non-zero probability after processing
    kept_mass: float  # their probability before processing
    entropy_before_bits: float
    entropy_after_bits: float
    settings: dict

    def as_records(self) -> list[dict]:
        return [asdict(row) for row in self.rows]


def _entropy_bits(probs: torch.Tensor) -> float:
    p = probs[probs > 0]
    return float(-(p * p.log2()).sum())


@torch.no_grad()
def next_token_distribution(
    model, tokenizer, prompt: str, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
    repetition_penalty: float = 1.0, top_n: int = 15,
) -> NextTokenView:
    """The model's next-token distribution for `prompt`: softmax of the raw logits ('before') and after
    transformers' processors in generate()'s order ('after'); tokens the processors cut have p_after == 0."""
    if not temperature > 0:
        raise TeachingError(f"temperature must be above 0, got {temperature} (temperature 0 is greedy decoding)",
                            "temperature", value=temperature)
    if top_k < 0:
        raise TeachingError(f"top_k must be 0 (off) or more, got {top_k}")
    if not 0 < top_p <= 1:
        raise TeachingError(f"top_p must be in (0, 1] (1 = off), got {top_p}")
    if not repetition_penalty > 0:
        raise TeachingError(f"repetition_penalty must be positive (1 = off), got {repetition_penalty}")
    if not 1 <= top_n <= 200:
        raise TeachingError(f"the number of bars must be between 1 and 200, got {top_n}")
    context = model.config.max_position_embeddings
    ids = encode_prompt(tokenizer, prompt, context, reserve=0).to(model.device)
    logits = model(input_ids=ids).logits[0, -1].float()
    processors = next_token_processors(temperature, top_k, top_p, repetition_penalty)
    processed = processors(ids, logits[None].clone())[0]
    p_before = torch.softmax(logits, dim=-1)
    p_after = torch.softmax(processed, dim=-1)
    kept = torch.isfinite(processed)

    by_before = torch.argsort(p_before, descending=True)
    rank_of = torch.empty_like(by_before)
    rank_of[by_before] = torch.arange(len(by_before), device=by_before.device)
    chosen = by_before[:top_n].tolist()
    for token_id in torch.argsort(p_after, descending=True)[:top_n].tolist():  # the penalty can reorder
        if token_id not in chosen and p_after[token_id] > 0:
            chosen.append(token_id)
    chosen.sort(key=lambda i: int(rank_of[i]))
    rows = [
        TokenProbability(rank=int(rank_of[i]) + 1, token_id=i, token=display_token(tokenizer, i),
                         logit=float(logits[i]), p_before=float(p_before[i]), p_after=float(p_after[i]),
                         kept=bool(kept[i]))
        for i in chosen
    ]
    return NextTokenView(
        prompt_tokens=ids.shape[1], vocab_size=int(logits.shape[0]), rows=rows, kept_count=int(kept.sum()),
        kept_mass=float(p_before[kept].sum()), entropy_before_bits=_entropy_bits(p_before),
        entropy_after_bits=_entropy_bits(p_after),
        settings={"temperature": temperature, "top_k": top_k, "top_p": top_p,
                  "repetition_penalty": repetition_penalty},
    )


# ----------------------------------------------------------------------------------------------------------------
# Surprise: cross entropy per token, perplexity of a text


@dataclass
class TokenSurprise:
    position: int
    token_id: int
    text: str  # the token's own characters (the pieces join back into the text)
    token: str  # the token as display_tokens shows it
    probability: float
    nats: float
    bits: float


@dataclass
class SurpriseView:
    tokens: list[TokenSurprise]
    cross_entropy_nats: float  # the mean surprise: exactly the training loss on this text
    cross_entropy_bits: float
    perplexity: float
    uniform_bits: float  # the surprise of a uniform guess over the vocabulary: log2(V)
    truncated: bool

    def highlights(self) -> list[tuple[str, float]]:
        """(text, score) pairs for a highlighted view: score = bits / log2(V), so 1 is a uniform guess."""
        return [(t.text, round(min(1.0, t.bits / self.uniform_bits), 3)) for t in self.tokens]


@torch.no_grad()
def token_surprises(model, tokenizer, text: str) -> SurpriseView:
    """How surprised the model is by each token of `text`: -log p(token | the tokens before it).

    The text starts after an end-of-text token (how documents begin in training), so the first token is scored
    too. The mean over the tokens is the cross entropy, the same number as the training loss, and
    exp(cross entropy) is the perplexity. Text beyond the context is left out (truncated=True)."""
    if not text or not text.strip():
        raise TeachingError("the text is empty: paste a sentence to measure", "empty_text")
    context = model.config.max_position_embeddings
    ids = tokenizer(text, add_special_tokens=False).input_ids
    truncated = len(ids) > context - 1
    ids = ids[: context - 1]
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    input_ids = torch.tensor([[start, *ids]], device=model.device)
    logits = model(input_ids=input_ids).logits[0, :-1].float()
    log_probs = torch.log_softmax(logits, dim=-1)
    targets = input_ids[0, 1:]
    nats = -log_probs.gather(1, targets[:, None])[:, 0]
    pieces, shown = _token_texts(tokenizer, ids), display_tokens(tokenizer, ids)
    tokens = [
        TokenSurprise(position=i, token_id=tid, text=pieces[i], token=shown[i],
                      probability=math.exp(-float(n)), nats=float(n), bits=float(n) / math.log(2))
        for i, (tid, n) in enumerate(zip(ids, nats.tolist()))
    ]
    mean = float(nats.mean())
    return SurpriseView(tokens=tokens, cross_entropy_nats=mean, cross_entropy_bits=mean / math.log(2),
                        perplexity=math.exp(mean), uniform_bits=math.log2(logits.shape[-1]), truncated=truncated)


def _token_texts(tokenizer, ids: list[int]) -> list[str]:
    """Each token's share of the decoded text. A byte-level token that holds part of a multi-byte character
    gets the characters completed so far, so the pieces always join back into the decoded text."""
    pieces, previous = [], ""
    for end in range(1, len(ids) + 1):
        decoded = tokenizer.decode(ids[:end], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        stable = decoded.rstrip("\ufffd") if end < len(ids) else decoded
        if not stable.startswith(previous):  # should not happen; fall back to the token alone
            stable = previous + tokenizer.decode([ids[end - 1]])
        pieces.append(stable[len(previous):])
        previous = stable
    return pieces


__all__ = ["DecodingSettings", "STRATEGIES", "default_sampling", "describe_sampling", "SeededSampler", "StopOnEvent",
           "TeachingError", "next_token_processors",
           "next_token_distribution", "token_surprises", "display_token", "display_tokens", "encode_prompt"]
