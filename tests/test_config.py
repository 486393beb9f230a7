import pytest

from configuration_minigpt import PRESETS, MiniGPTConfig


def test_defaults_follow_transformers_names():
    config = MiniGPTConfig()
    assert config.model_type == "minigpt"
    assert config.intermediate_size == 4 * config.hidden_size
    assert config.tie_word_embeddings is True
    assert config.use_cache is True


@pytest.mark.parametrize(
    "alias, standard",
    [
        ("d_model", "hidden_size"),
        ("n_heads", "num_attention_heads"),
        ("n_layers", "num_hidden_layers"),
        ("context_size", "max_position_embeddings"),
        ("n_embd", "hidden_size"),
        ("n_head", "num_attention_heads"),
        ("n_layer", "num_hidden_layers"),
        ("n_positions", "max_position_embeddings"),
    ],
)
def test_aliases_read_and_write_the_same_value(alias, standard):
    config = MiniGPTConfig(hidden_size=64, num_attention_heads=4)
    assert getattr(config, alias) == getattr(config, standard)
    setattr(config, alias, 8)
    assert getattr(config, standard) == 8
    # ... and the alias works as a constructor argument too (values valid with the other defaults)
    value = {"hidden_size": 48, "num_attention_heads": 3, "num_hidden_layers": 2, "max_position_embeddings": 64}[standard]
    assert getattr(MiniGPTConfig(**{alias: value}), standard) == value


def test_aliases_in_constructor_feed_derived_defaults():
    config = MiniGPTConfig(d_model=64, n_heads=2, n_layers=1, context_size=32)
    assert (config.hidden_size, config.num_attention_heads, config.num_hidden_layers) == (64, 2, 1)
    assert config.max_position_embeddings == 32
    assert config.intermediate_size == 256


def test_configs_are_equal_only_when_every_setting_is():
    assert MiniGPTConfig(hidden_size=64, num_attention_heads=4) == MiniGPTConfig(d_model=64, n_heads=4)
    assert MiniGPTConfig(hidden_size=64, num_attention_heads=4) != MiniGPTConfig(hidden_size=128, num_attention_heads=4)
    assert MiniGPTConfig() != MiniGPTConfig(mlp_bias=False)


def test_save_and_load_round_trip(tmp_path):
    config = MiniGPTConfig.from_preset("tiny", vocab_size=321, eos_token_id=3)
    config.save_pretrained(tmp_path)
    loaded = MiniGPTConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()
    assert loaded.d_model == 128


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_build_valid_configs(name):
    config = MiniGPTConfig.from_preset(name, vocab_size=100)
    for key, value in PRESETS[name].items():
        assert getattr(config, key) == value
    assert config.vocab_size == 100


def test_unknown_preset_lists_the_choices():
    with pytest.raises(ValueError, match="choose one of: tiny, small, base"):
        MiniGPTConfig.from_preset("huge")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"hidden_size": 100, "num_attention_heads": 3}, r"hidden_size \(100\) must be divisible by num_attention_heads \(3\)"),
        ({"vocab_size": 0}, "vocab_size must be a positive integer"),
        ({"hidden_size": -8}, "hidden_size must be a positive integer"),
        ({"num_hidden_layers": 0}, "num_hidden_layers must be a positive integer"),
        ({"num_attention_heads": 0}, "num_attention_heads must be a positive integer"),
        ({"intermediate_size": -1}, "intermediate_size must be a positive integer"),
        ({"max_position_embeddings": 0}, "max_position_embeddings must be a positive integer"),
        ({"hidden_dropout_prob": 1.0}, r"hidden_dropout_prob must be in \[0, 1\)"),
        ({"hidden_dropout_prob": -0.1}, r"hidden_dropout_prob must be in \[0, 1\)"),
        ({"attention_probs_dropout_prob": 1.5}, r"attention_probs_dropout_prob must be in \[0, 1\)"),
        ({"layer_norm_eps": 0.0}, "layer_norm_eps must be positive"),
    ],
)
def test_invalid_values_say_what_to_change(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MiniGPTConfig(**kwargs)
