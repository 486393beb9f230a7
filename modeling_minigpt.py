"""MiniGPT: the GPT of the book, as a transformers causal language model.

token + position embeddings -> N x [x + attn(ln(x)); x + mlp(ln(x))] -> final LayerNorm -> LM head (tied)

Self-contained on purpose: `save_pretrained` copies this file (and configuration_minigpt.py) into every saved
model, so that `AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True)` works in anyone's code. Anyone's
transformers, too: it uses only public API that exists from 4.57 through 5.x, and where that API changed between
versions (the cache's name, the mask function's arguments) it reads which form the installed version has.
"""

import copy
import inspect
import math
import warnings
from typing import Unpack

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache
from transformers.masking_utils import create_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import TransformersKwargs, can_return_tuple

try:  # 5.x: initialisers that leave weights loaded from a checkpoint alone
    from transformers import initialization as init
except ImportError:  # 4.x runs _init_weights only on modules whose weights were not loaded
    from torch.nn import init

try:  # inside a saved model directory (remote code) the two files form a package
    from .configuration_minigpt import MiniGPTConfig
except ImportError:  # in the project itself they are top-level modules
    from configuration_minigpt import MiniGPTConfig

# transformers 5.24 renamed the KV cache from `past_key_values` to `cache` (the forward argument, generate()'s keyword
# and the output field). Older versions (4.57, 5.0) also place new tokens in the cache by `cache_position`, which
# their mask function and static cache need; newer ones dropped it.
_CACHE_FIELD = "cache" if "cache" in BaseModelOutputWithPast.__dataclass_fields__ else "past_key_values"
_MASK_TAKES_CACHE_POSITION = "cache_position" in inspect.signature(create_causal_mask).parameters


def _the_cache(cache: Cache | None, past_key_values: Cache | None) -> Cache | None:
    """The KV cache under either name: generate() passes `cache` from transformers 5.24 on, `past_key_values` before."""
    if past_key_values is None:
        return cache
    if cache is not None:
        raise ValueError("MiniGPT: pass the KV cache as `cache` or as `past_key_values`, not both.")
    if _CACHE_FIELD == "cache":  # as transformers' own models say it from 5.24 on
        warnings.warn("`past_key_values` is deprecated in this transformers version; pass `cache`.", FutureWarning,
                      stacklevel=3)
    return past_key_values


def eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """softmax(q k^T / sqrt(d) + mask) v, written out: the chapter's attention, and the one that returns weights."""
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask  # additive: 0 where allowed, -inf (min float) where masked
    weights = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()  # (batch, seq, heads, head_dim)
    return output, weights


class MiniGPTAttention(nn.Module):
    """Causal multi-head self-attention; the kernel (eager, sdpa, flash) comes from transformers' registry."""

    def __init__(self, config: MiniGPTConfig, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx  # which slot of the KV cache is ours
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = True
        # One matmul for q, k and v: fewer, larger kernels are faster than three small ones.
        self.qkv_proj = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=config.attention_bias)
        self.o_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=config.attention_bias)
        self.o_proj.writes_to_residual = True  # scaled init, see MiniGPTPreTrainedModel._init_weights

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, seq, _ = hidden_states.shape
        # (batch, seq, 3 * hidden) -> 3 x (batch, heads, seq, head_dim)
        qkv = self.qkv_proj(hidden_states).view(batch, seq, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)

        if cache is not None:  # append this step's keys/values and attend over all of them
            # (4.57's and 5.0's static cache writes at cache_position; newer versions ignore the extra argument)
            key, value = cache.update(key, value, self.layer_idx, {"cache_position": kwargs.get("cache_position")})

        if hasattr(ALL_ATTENTION_FUNCTIONS, "get_interface"):  # 5.x: also checks the name
            attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(
                self.config._attn_implementation, eager_attention_forward
            )
        elif self.config._attn_implementation == "eager":
            attention_interface = eager_attention_forward
        else:  # before 5.x (named as 4.x looks for it, to allow set_attn_implementation)
            attention_interface = ALL_ATTENTION_FUNCTIONS[self.config._attn_implementation]
        output, weights = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.config.attention_probs_dropout_prob if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )
        output = self.o_proj(output.reshape(batch, seq, -1))
        return output, weights


class MiniGPTMLP(nn.Module):
    """Position-wise feed-forward: expand (4x), GELU, project back."""

    def __init__(self, config: MiniGPTConfig):
        super().__init__()
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=config.mlp_bias)
        self.act_fn = ACT2FN[config.hidden_act]
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=config.mlp_bias)
        self.down_proj.writes_to_residual = True

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.up_proj(hidden_states)))


class MiniGPTBlock(GradientCheckpointingLayer):
    """Pre-LayerNorm transformer block: normalise, transform, add back to the residual stream."""

    def __init__(self, config: MiniGPTConfig, layer_idx: int):
        super().__init__()
        self.input_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attn = MiniGPTAttention(config, layer_idx)
        self.post_attention_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = MiniGPTMLP(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns the new hidden states and the attention weights (None from kernels that do not compute them)."""
        attn_output, weights = self.self_attn(self.input_layernorm(hidden_states), attention_mask, cache=cache,
                                              **kwargs)
        hidden_states = hidden_states + self.dropout(attn_output)
        hidden_states = hidden_states + self.dropout(self.mlp(self.post_attention_layernorm(hidden_states)))
        return hidden_states, weights


class MiniGPTPreTrainedModel(PreTrainedModel):
    config: MiniGPTConfig
    config_class = MiniGPTConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["MiniGPTBlock"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = True

    def _init_weights(self, module):
        """GPT-2 init: N(0, 0.02) everywhere, and the projections that write into the residual stream scaled by
        1/sqrt(2 * layers), so that the stream's variance does not grow with depth.

        The flag sits on the Linear itself: for remote code, transformers skips init on modules that own no
        parameters directly (such as the attention module)."""
        super()._init_weights(module)
        if getattr(module, "writes_to_residual", False):
            std = self.config.initializer_range / math.sqrt(2 * self.config.num_hidden_layers)
            init.normal_(module.weight, mean=0.0, std=std)


class MiniGPTModel(MiniGPTPreTrainedModel):
    """The transformer without a head: returns the final hidden states (and the KV cache)."""

    def __init__(self, config: MiniGPTConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.embed_positions = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.layers = nn.ModuleList(MiniGPTBlock(config, i) for i in range(config.num_hidden_layers))
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        past_key_values: Cache | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPast:
        r"""cache: the KV cache (`past_key_values` before transformers 5.24: either name works)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("MiniGPTModel: pass exactly one of input_ids or inputs_embeds.")
        cache = _the_cache(cache, past_key_values)
        use_cache = self.config.use_cache if use_cache is None else use_cache
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            cache, use_cache = None, False  # the backward pass recomputes each block, which would write the cache twice
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)

        past_length = cache.get_seq_length() if cache is not None else 0
        seq_length = inputs_embeds.shape[1]
        # Learned positions end at the context size: say so instead of an index error deep in the embedding.
        # (A static cache reports its length as a tensor and bounds itself; compiled graphs skip the check.)
        if isinstance(past_length, int) and past_length + seq_length > self.config.max_position_embeddings:
            raise ValueError(
                f"MiniGPT: {past_length + seq_length} tokens exceed the context of {self.config.max_position_embeddings}"
                " (max_position_embeddings); shorten the prompt or max_new_tokens."
            )
        if position_ids is None:
            # generate() passes position_ids built from the attention mask (left padding); plain calls count on
            # from the number of tokens already in the cache
            position_ids = torch.arange(past_length, past_length + seq_length, device=inputs_embeds.device)[None]

        # None for plain causal attention with sdpa (its is_causal path), an explicit mask with padding or eager.
        if _MASK_TAKES_CACHE_POSITION:  # 4.57, 5.0: the new tokens' slots in the cache (generate() passes them)
            if kwargs.get("cache_position") is None:
                kwargs["cache_position"] = torch.arange(past_length, past_length + seq_length,
                                                        device=inputs_embeds.device)
            mask = create_causal_mask(self.config, inputs_embeds, attention_mask, kwargs["cache_position"], cache,
                                      position_ids)
        else:
            mask = create_causal_mask(self.config, inputs_embeds, attention_mask, cache, position_ids)

        hidden_states = self.dropout(inputs_embeds + self.embed_positions(position_ids))
        all_hidden_states = () if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for block in self.layers:
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            hidden_states, weights = block(hidden_states, mask, cache=cache, **kwargs)
            if output_attentions:
                all_attentions += (weights,)
        hidden_states = self.norm(hidden_states)
        if output_hidden_states:  # as GPT-2: the last entry is the normalised output
            all_hidden_states += (hidden_states,)
        return BaseModelOutputWithPast(last_hidden_state=hidden_states, hidden_states=all_hidden_states,
                                       attentions=all_attentions, **{_CACHE_FIELD: cache})


def _gpt2_names(num_layers: int) -> list[tuple[str, str, bool]]:
    """(GPT-2 name, MiniGPT name, transposed) for every parameter: GPT-2 is this same architecture, but its Conv1D
    layers store weights as (in, out), nn.Linear as (out, in)."""
    names = [("transformer.wte.weight", "model.embed_tokens.weight", False),
             ("transformer.wpe.weight", "model.embed_positions.weight", False),
             ("transformer.ln_f.weight", "model.norm.weight", False),
             ("transformer.ln_f.bias", "model.norm.bias", False),
             ("lm_head.weight", "lm_head.weight", False)]
    blocks = {"ln_1": "input_layernorm", "attn.c_attn": "self_attn.qkv_proj", "attn.c_proj": "self_attn.o_proj",
              "ln_2": "post_attention_layernorm", "mlp.c_fc": "mlp.up_proj", "mlp.c_proj": "mlp.down_proj"}
    for i in range(num_layers):
        for gpt2_name, name in blocks.items():
            names.append((f"transformer.h.{i}.{gpt2_name}.weight", f"model.layers.{i}.{name}.weight",
                          not gpt2_name.startswith("ln")))
            names.append((f"transformer.h.{i}.{gpt2_name}.bias", f"model.layers.{i}.{name}.bias", False))
    return names


class MiniGPTForCausalLM(MiniGPTPreTrainedModel, GenerationMixin):
    """MiniGPT with the language-model head: next-token logits, the loss, and everything generate() offers."""

    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: MiniGPTConfig):
        super().__init__(config)
        self.model = MiniGPTModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        # A tied head is the embedding itself: saving leaves it out, and the Trainer, resuming from a checkpoint,
        # re-ties a key it finds missing when the model declares it here (else it reports the head as missing).
        self._keys_to_ignore_on_save = set(self._tied_weights_keys) if config.tie_word_embeddings else None
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        past_key_values: Cache | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> CausalLMOutputWithPast:
        r"""labels: token ids (-100 = ignore); they are shifted inside the loss, so pass labels = input_ids.
        logits_to_keep: compute logits for the last N positions only (generate() asks for 1).
        cache: the KV cache; generate() passes it as `cache` from transformers 5.24 on, as `past_key_values` before."""
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=_the_cache(cache, past_key_values),
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep  # 0: all
        logits = self.lm_head(hidden_states[:, keep, :])

        loss = None
        if labels is not None:
            # transformers' loss: shifts the labels and, under gradient accumulation, divides by the token count
            # of the whole accumulated batch (num_items_in_batch in kwargs) instead of averaging averages.
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)

        return CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            **{_CACHE_FIELD: getattr(outputs, _CACHE_FIELD)},
        )

    def generate(self, inputs=None, generation_config=None, **kwargs):
        """transformers' generate(), after refusing up front, before the first token, what would overflow the
        learned positions part-way through (prompt + max_new_tokens > context): no text is produced and then lost.
        """
        prompt = inputs if inputs is not None else kwargs.get("input_ids", kwargs.get("inputs_embeds"))
        prompt_length = prompt.shape[1] if prompt is not None else 1  # no prompt: generate() starts from bos
        # The lengths generate() will use: its keyword arguments over the given config over the model's defaults.
        settings = copy.deepcopy(self.generation_config)
        if generation_config is not None:
            settings.update(**generation_config.to_diff_dict())
        settings.update(**kwargs)
        max_length = (prompt_length + settings.max_new_tokens if settings.max_new_tokens is not None
                      else settings.max_length)
        context = self.config.max_position_embeddings
        if max_length > context:
            room = context - prompt_length
            raise ValueError(
                f"MiniGPT: the prompt ({prompt_length} tokens) plus the tokens to generate "
                f"({max_length - prompt_length}) exceed the context of {context} tokens; "
                + (f"pass max_new_tokens={room} or less." if room > 0 else "shorten the prompt.")
            )
        return super().generate(inputs, generation_config, **kwargs)

    @classmethod
    def from_gpt2(cls, model_or_name_or_path, **from_pretrained_kwargs) -> "MiniGPTForCausalLM":
        """A MiniGPT with the weights of a transformers GPT-2 (an instance, a local directory or a Hub name).

        GPT-2 is this same architecture; its Conv1D layers store weights transposed relative to nn.Linear.
        """
        from transformers import GPT2LMHeadModel

        gpt2 = model_or_name_or_path
        if not isinstance(gpt2, GPT2LMHeadModel):
            gpt2 = GPT2LMHeadModel.from_pretrained(model_or_name_or_path, **from_pretrained_kwargs)
        g = gpt2.config
        config = MiniGPTConfig(
            vocab_size=g.vocab_size,
            hidden_size=g.n_embd,
            num_hidden_layers=g.n_layer,
            num_attention_heads=g.n_head,
            intermediate_size=g.n_inner or 4 * g.n_embd,
            max_position_embeddings=g.n_positions,
            hidden_act=g.activation_function,
            layer_norm_eps=g.layer_norm_epsilon,
            initializer_range=g.initializer_range,
            tie_word_embeddings=g.tie_word_embeddings,
            bos_token_id=g.bos_token_id,
            eos_token_id=g.eos_token_id,
            pad_token_id=g.pad_token_id,
        )
        source = gpt2.state_dict()
        state = {name: source[gpt2_name].t() if transposed else source[gpt2_name]
                 for gpt2_name, name, transposed in _gpt2_names(g.n_layer)}
        model = cls(config).to(gpt2.dtype)
        model.load_state_dict({k: v.detach().clone() for k, v in state.items()})
        model.generation_config = gpt2.generation_config
        return model.eval() if not gpt2.training else model

    def to_gpt2(self):
        """This model as a transformers GPT2LMHeadModel: the same weights and logits, and a saved folder that loads
        with AutoModelForCausalLM without trust_remote_code (python -m minigpt.export_gpt2 writes one). A setting
        GPT-2 does not have (no biases, another activation) raises a ValueError that names it."""
        from transformers import GPT2LMHeadModel

        gpt2 = GPT2LMHeadModel(self.config.to_gpt2_config()).to(device=self.device, dtype=self.dtype)
        source = self.state_dict()
        state = {gpt2_name: (source[name].t() if transposed else source[name]).detach().clone()
                 for gpt2_name, name, transposed in _gpt2_names(self.config.num_hidden_layers)}
        gpt2.load_state_dict(state)
        gpt2.generation_config = copy.deepcopy(self.generation_config)
        return gpt2.train(self.training)


# Auto classes: in this process (AutoModelForCausalLM.from_config / from_pretrained on our model_type) and as
# remote code (save_pretrained writes auto_map into config.json and copies both files).
MiniGPTConfig.register_for_auto_class()
MiniGPTModel.register_for_auto_class("AutoModel")
MiniGPTForCausalLM.register_for_auto_class("AutoModelForCausalLM")


def _register_in_process():
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    try:
        AutoConfig.register(MiniGPTConfig.model_type, MiniGPTConfig, exist_ok=True)
        AutoModel.register(MiniGPTConfig, MiniGPTModel, exist_ok=True)
        AutoModelForCausalLM.register(MiniGPTConfig, MiniGPTForCausalLM, exist_ok=True)
    except ValueError:  # a remote-code copy of these classes was registered first: keep that one
        pass


_register_in_process()

__all__ = ["MiniGPTPreTrainedModel", "MiniGPTModel", "MiniGPTForCausalLM"]
