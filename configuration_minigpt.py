"""MiniGPT configuration.

Self-contained on purpose: `save_pretrained` copies this file next to every saved model, so it may import
nothing from the project.
"""

from transformers import PretrainedConfig


# Named sizes shared by the CLI, the app and the benchmarks. Only the architecture: the vocabulary size comes
# from the tokenizer and the context from --block_size.
PRESETS = {
    # A few seconds a step on a laptop CPU: tests and first experiments.
    "tiny": {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 128},
    # The default of `python train.py`: learns readable text in about five CPU minutes.
    "small": {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "max_position_embeddings": 128},
    # nanoGPT's Shakespeare GPU recipe and the benchmark dimensions (6 x 6 x 384).
    "base": {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 6, "max_position_embeddings": 256},
    # GPT-2 small (124M) shaped.
    "gpt2": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "max_position_embeddings": 1024},
}

# hidden_act -> GPT-2's activation_function, for the activations GPT2Config documents. gelu_pytorch_tanh (MiniGPT's
# default) is gelu_new's formula in one PyTorch kernel: GPT-2's own name is the one every GPT-2 tool knows.
GPT2_ACTIVATIONS = {"gelu_pytorch_tanh": "gelu_new", "gelu_new": "gelu_new", "gelu": "gelu", "relu": "relu",
                    "silu": "silu", "tanh": "tanh"}


class MiniGPTConfig(PretrainedConfig):
    r"""Configuration of a MiniGPT: a decoder-only GPT with pre-LayerNorm blocks and learned positions.

    Names follow transformers (`hidden_size`, `num_hidden_layers`, ...). The book's names (`d_model`, `n_heads`,
    `n_layers`, `context_size`) and GPT-2's (`n_embd`, `n_head`, `n_layer`, `n_positions`) are aliases that read
    and write the same values.

    Example:
        >>> config = MiniGPTConfig.from_preset("tiny", vocab_size=512)
        >>> config.d_model, config.n_embd, config.hidden_size
        (128, 128, 128)
    """

    model_type = "minigpt"
    attribute_map = {
        # the book
        "d_model": "hidden_size",
        "n_heads": "num_attention_heads",
        "n_layers": "num_hidden_layers",
        "context_size": "max_position_embeddings",
        # GPT-2
        "n_embd": "hidden_size",
        "n_head": "num_attention_heads",
        "n_layer": "num_hidden_layers",
        "n_positions": "max_position_embeddings",
        "n_inner": "intermediate_size",
    }
    keys_to_ignore_at_inference = ["past_key_values", "cache"]  # the cache's name before and after 5.24
    # 5.x turns every config class into a dataclass, whose generated __eq__ would compare only the base class's
    # fields (ours are set in __init__): keep the base class's comparison of every attribute.
    __eq__ = PretrainedConfig.__eq__

    # A classic __init__ rather than 5.x's dataclass fields: transformers 4.x reads only this form, and 5.x still
    # accepts it (its configs "created in v4 with custom __init__").
    def __init__(
        self,
        vocab_size: int = 8192,
        hidden_size: int = 384,
        num_hidden_layers: int = 6,
        num_attention_heads: int = 6,
        intermediate_size: int | None = None,  # None: 4 x hidden_size, as in GPT-2
        max_position_embeddings: int = 256,
        hidden_act: str = "gelu_pytorch_tanh",  # GPT-2's tanh GELU, fused by PyTorch
        hidden_dropout_prob: float = 0.0,  # embeddings and both residual branches
        attention_probs_dropout_prob: float = 0.0,
        layer_norm_eps: float = 1e-5,
        initializer_range: float = 0.02,
        attention_bias: bool = True,
        mlp_bias: bool = True,
        tie_word_embeddings: bool = True,
        use_cache: bool = True,
        bos_token_id: int | None = None,
        eos_token_id: int | list[int] | None = None,
        pad_token_id: int | None = None,
        **kwargs,
    ):
        # Aliases given to the constructor (d_model=..., n_layer=...) arrive as extra kwargs: apply them over the
        # defaults first, so that the derived default below sees them.
        aliases = {name: kwargs.pop(name) for name in list(kwargs) if name in self.attribute_map}
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.max_position_embeddings = max_position_embeddings
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        self.attention_bias = attention_bias
        self.mlp_bias = mlp_bias
        self.use_cache = use_cache
        for alias, value in aliases.items():
            setattr(self, alias, value)
        if self.intermediate_size is None:
            self.intermediate_size = 4 * self.hidden_size
        # 4.x's base class takes these as its own arguments (and would reset them to its defaults if set above);
        # 5.x sets them as extra attributes.
        super().__init__(tie_word_embeddings=tie_word_embeddings, bos_token_id=bos_token_id,
                         eos_token_id=eos_token_id, pad_token_id=pad_token_id, **kwargs)
        self.validate_architecture()

    def validate_architecture(self):
        """Raise a ValueError that says what to change (checked here rather than through 5.x's @strict fields,
        whose wrapper error is not a ValueError and which 4.x does not have)."""
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"MiniGPTConfig: {name} must be a positive integer, got {value!r}.")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"MiniGPTConfig: hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads}); change one of them, e.g. hidden_size="
                f"{self.num_attention_heads * max(1, round(self.hidden_size / self.num_attention_heads))}."
            )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"MiniGPTConfig: {name} must be in [0, 1), got {value!r}.")
        if not self.layer_norm_eps > 0:
            raise ValueError(f"MiniGPTConfig: layer_norm_eps must be positive, got {self.layer_norm_eps!r}.")

    def to_gpt2_config(self):
        """The transformers GPT2Config of this same architecture (MiniGPTForCausalLM.to_gpt2 fills in the weights).
        A setting GPT-2 does not have raises a ValueError that names it."""
        from transformers import GPT2Config

        for name in ("attention_bias", "mlp_bias"):
            if not getattr(self, name):
                raise ValueError(f"MiniGPTConfig: {name}=False has no GPT-2 form (GPT-2 has a bias in every "
                                 "projection); export only models trained with biases.")
        if self.hidden_act not in GPT2_ACTIVATIONS:
            raise ValueError(f"MiniGPTConfig: hidden_act={self.hidden_act!r} has no GPT-2 form; GPT-2 takes "
                             f"{', '.join(sorted(GPT2_ACTIVATIONS))}.")
        return GPT2Config(
            vocab_size=self.vocab_size,
            n_positions=self.max_position_embeddings,
            n_embd=self.hidden_size,
            n_layer=self.num_hidden_layers,
            n_head=self.num_attention_heads,
            n_inner=self.intermediate_size,
            activation_function=GPT2_ACTIVATIONS[self.hidden_act],
            resid_pdrop=self.hidden_dropout_prob,
            embd_pdrop=self.hidden_dropout_prob,
            attn_pdrop=self.attention_probs_dropout_prob,
            layer_norm_epsilon=self.layer_norm_eps,
            initializer_range=self.initializer_range,
            tie_word_embeddings=self.tie_word_embeddings,
            use_cache=self.use_cache,
            bos_token_id=self.bos_token_id,
            eos_token_id=self.eos_token_id,
            pad_token_id=self.pad_token_id,
        )

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "MiniGPTConfig":
        """A config from one of `PRESETS` (tiny, small, base, gpt2), with any field overridden."""
        if name not in PRESETS:
            raise ValueError(f"Unknown MiniGPT preset {name!r}; choose one of: {', '.join(PRESETS)}.")
        return cls(**{**PRESETS[name], **overrides})


__all__ = ["MiniGPTConfig", "PRESETS", "GPT2_ACTIVATIONS"]
