"""transformers' own model test suite, run against MiniGPT.

ModelTesterMixin (tests/test_modeling_common.py) and ConfigTester (tests/test_configuration_common.py) come
from the transformers sdist of the installed version: tests/fetch_transformers_tests.py downloads it with pip
and extracts them into tests/_transformers_suite/ (git-ignored). Without network the module is skipped.

The sdist does not ship tests/generation/test_utils.py (GenerationTesterMixin), so MiniGPTGenerationTest
below checks the generate() behaviours that matter for a custom causal LM itself. If a later sdist ships the
real mixin, MiniGPTModelTest inherits it automatically.

Run: python -m pytest tests/test_transformers_suite.py -q   (about a minute on 2 CPU cores)
"""

import sys
import unittest
import warnings
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
for _p in (str(HERE), str(REPO_ROOT)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import fetch_transformers_tests as _fetch  # noqa: E402

try:
    _suite_dir = _fetch.ensure_suite()
except _fetch.FetchError as _exc:
    if _exc.offline or _exc.unavailable:
        pytest.skip(
            f"transformers {_fetch.installed_version()}'s test suite could not be downloaded with pip: {_exc.summary}",
            allow_module_level=True,
        )
    raise
_fetch.add_to_sys_path(_suite_dir)

import torch  # noqa: E402
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM  # noqa: E402
from transformers.models.auto import modeling_auto  # noqa: E402
from transformers.testing_utils import torch_device  # noqa: E402

with warnings.catch_warnings():
    # The mixins use pytest marks (flash_attn_test, torch_compile_test...) that transformers' own conftest registers.
    warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
    from hf_transformers_tests.generation import test_utils as _generation_test_utils
    from hf_transformers_tests.test_configuration_common import ConfigTester
    from hf_transformers_tests.test_modeling_common import ModelTesterMixin, ids_tensor

from configuration_minigpt import MiniGPTConfig  # noqa: E402
from modeling_minigpt import MiniGPTForCausalLM, MiniGPTModel  # noqa: E402

# The sdist has no tests/generation/test_utils.py: fetch_transformers_tests writes an empty stand-in.
GENERATION_MIXIN_SHIPPED = not getattr(_generation_test_utils, "SUITE_STUB", False)
_GENERATION_BASES = (_generation_test_utils.GenerationTesterMixin,) if GENERATION_MIXIN_SHIPPED else ()

MODEL_TYPE = MiniGPTConfig.model_type


class _Registration:
    """Make transformers' Auto machinery know MiniGPT while the suite runs; undo only what was added.

    The mixins look models up by class name in MODEL_MAPPING_NAMES / MODEL_FOR_CAUSAL_LM_MAPPING_NAMES (which
    decides e.g. that a causal LM gets `labels`) and by config class in MODEL_MAPPING.
    """

    def __init__(self):
        self._undo = []

    def _set_name(self, mapping, value):
        if MODEL_TYPE not in mapping:
            mapping[MODEL_TYPE] = value
            self._undo.append(lambda: mapping.pop(MODEL_TYPE, None))

    def _register(self, auto_cls, key, value, lazy_mapping):
        if key not in lazy_mapping._extra_content:
            auto_cls.register(key, value, exist_ok=True)
            self._undo.append(lambda: lazy_mapping._extra_content.pop(key, None))

    def __enter__(self):
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING

        self._set_name(modeling_auto.MODEL_MAPPING_NAMES, MiniGPTModel.__name__)
        self._set_name(modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MiniGPTForCausalLM.__name__)
        if MODEL_TYPE not in CONFIG_MAPPING._extra_content:
            AutoConfig.register(MODEL_TYPE, MiniGPTConfig, exist_ok=True)
            self._undo.append(lambda: CONFIG_MAPPING._extra_content.pop(MODEL_TYPE, None))
        self._register(AutoModel, MiniGPTConfig, MiniGPTModel, modeling_auto.MODEL_MAPPING)
        self._register(AutoModelForCausalLM, MiniGPTConfig, MiniGPTForCausalLM, modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING)
        return self

    def __exit__(self, *exc):
        while self._undo:
            self._undo.pop()()


class MiniGPTModelTester:
    """Small MiniGPTs and inputs for the mixins, shaped like transformers' own CausalLMModelTester."""

    def __init__(
        self,
        parent,
        batch_size=13,
        seq_length=7,
        is_training=True,
        use_input_mask=True,
        use_labels=True,
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        hidden_act="gelu",
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        max_position_embeddings=512,
        initializer_range=0.02,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    ):
        self.parent = parent
        self.batch_size = batch_size
        self.seq_length = seq_length
        self.is_training = is_training
        self.use_input_mask = use_input_mask
        self.use_labels = use_labels
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.max_position_embeddings = max_position_embeddings
        self.initializer_range = initializer_range
        self.pad_token_id = pad_token_id
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id

    def get_config(self):
        return MiniGPTConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            hidden_act=self.hidden_act,
            hidden_dropout_prob=self.hidden_dropout_prob,
            attention_probs_dropout_prob=self.attention_probs_dropout_prob,
            max_position_embeddings=self.max_position_embeddings,
            initializer_range=self.initializer_range,
            pad_token_id=self.pad_token_id,
            bos_token_id=self.bos_token_id,
            eos_token_id=self.eos_token_id,
        )

    def prepare_config_and_inputs(self):
        input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size)
        input_mask = None
        if self.use_input_mask:  # as CausalLMModelTester: rows with right padding of every length
            input_mask = torch.tril(torch.ones_like(input_ids).to(torch_device))
        token_labels = None
        if self.use_labels:
            token_labels = ids_tensor([self.batch_size, self.seq_length], self.vocab_size)
        return self.get_config(), input_ids, input_mask, token_labels

    def prepare_config_and_inputs_for_common(self):
        config, input_ids, input_mask, _ = self.prepare_config_and_inputs()
        return config, {"input_ids": input_ids, "attention_mask": input_mask}

    def create_and_check_model(self, config, input_ids, input_mask, token_labels):
        model = MiniGPTModel(config).to(torch_device).eval()
        with torch.no_grad():
            result = model(input_ids, attention_mask=input_mask)
            result = model(input_ids)
        self.parent.assertEqual(
            result.last_hidden_state.shape, (self.batch_size, self.seq_length, self.hidden_size)
        )

    def create_and_check_for_causal_lm(self, config, input_ids, input_mask, token_labels):
        model = MiniGPTForCausalLM(config).to(torch_device).eval()
        with torch.no_grad():
            result = model(input_ids, attention_mask=input_mask, labels=token_labels)
        self.parent.assertEqual(result.logits.shape, (self.batch_size, self.seq_length, self.vocab_size))
        self.parent.assertEqual(result.loss.shape, ())
        self.parent.assertTrue(torch.isfinite(result.loss))


class MiniGPTModelTest(ModelTesterMixin, *_GENERATION_BASES, unittest.TestCase):
    all_model_classes = (MiniGPTModel, MiniGPTForCausalLM)
    # MiniGPT has learned absolute positions (like GPT-2): resizing them is not a feature it offers.
    test_resize_position_embeddings = False
    # The mixin dates a model by a "# Copyright YYYY" line atop its config file and skips models "added before
    # 2023" (including undated ones) in test_can_init_all_missing_weights unless this is set: hold MiniGPT to it.
    test_can_init_all_missing_weights_before_2023 = True

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._registration = _Registration().__enter__()

    @classmethod
    def tearDownClass(cls):
        cls._registration.__exit__(None, None, None)
        super().tearDownClass()

    def setUp(self):
        self.model_tester = MiniGPTModelTester(self)
        self.config_tester = ConfigTester(self, config_class=MiniGPTConfig, hidden_size=37, num_attention_heads=1)

    def test_config(self):
        self.config_tester.run_common_tests()

    def test_model(self):
        self.model_tester.create_and_check_model(*self.model_tester.prepare_config_and_inputs())

    def test_for_causal_lm(self):
        self.model_tester.create_and_check_for_causal_lm(*self.model_tester.prepare_config_and_inputs())

    if not GENERATION_MIXIN_SHIPPED:

        def test_generation_tester_mixin_inheritance(self):
            self.skipTest(
                "transformers' sdist does not ship tests/generation/test_utils.py (GenerationTesterMixin); "
                "MiniGPTGenerationTest covers generate()"
            )


class MiniGPTGenerationTest(unittest.TestCase):
    """generate() checks standing in for GenerationTesterMixin (not in the sdist)."""

    def setUp(self):
        torch.manual_seed(0)
        # No EOS: every sequence runs to max_new_tokens, so the hand-written references below need no stopping logic.
        self.config = MiniGPTModelTester(
            self, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, bos_token_id=None, eos_token_id=None
        ).get_config()
        self.model = MiniGPTForCausalLM(self.config).to(torch_device).eval()
        with torch.no_grad():  # Larger than the N(0, 0.02) init: no near-ties for argmax, and positions matter.
            for module in self.model.modules():
                if isinstance(module, torch.nn.Embedding):
                    module.weight.normal_(0.0, 1.0)
        # Prompts without the pad token (id 0).
        self.input_ids = torch.randint(1, self.config.vocab_size, (3, 5), device=torch_device)

    def _generate(self, **kwargs):
        kwargs = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": self.config.pad_token_id, **kwargs}
        with torch.no_grad():
            return self.model.generate(**kwargs)

    def _reference_greedy(self, input_ids, steps=8):
        """Greedy decoding by hand: full forward passes, no cache, no generate()."""
        ids = input_ids
        with torch.no_grad():
            for _ in range(steps):
                next_token = self.model(ids, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
                ids = torch.cat([ids, next_token], dim=-1)
        return ids

    def test_can_generate(self):
        self.assertTrue(MiniGPTForCausalLM.can_generate())
        self.assertFalse(MiniGPTModel.can_generate())

    def test_cached_forward_matches_full_forward(self):
        """Prefill 3 tokens, then feed the rest one at a time through the cache: same logits as one full pass."""
        with torch.no_grad():
            full = self.model(self.input_ids, use_cache=False).logits
            out = self.model(self.input_ids[:, :3], use_cache=True)
            steps = [out.logits]
            for i in range(3, self.input_ids.shape[1]):
                out = self.model(self.input_ids[:, i : i + 1], cache=out.cache, use_cache=True)
                steps.append(out.logits)
        torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-4, atol=1e-4)

    def test_dict_output_and_scores(self):
        out = self._generate(
            input_ids=self.input_ids, return_dict_in_generate=True, output_scores=True, output_logits=True,
            output_hidden_states=True, output_attentions=True,
        )
        self.assertEqual(out.sequences.shape, (3, 5 + 8))
        self.assertEqual(len(out.scores), 8)
        self.assertEqual(out.scores[0].shape, (3, self.config.vocab_size))
        self.assertEqual(len(out.attentions), 8)
        self.assertEqual(len(out.hidden_states), 8)
        self.assertIsNotNone(out.cache)

    def test_continue_from_returned_cache(self):
        first = self._generate(input_ids=self.input_ids, max_new_tokens=4, return_dict_in_generate=True)
        cache = first.cache
        self.assertIsNotNone(cache)
        continued = self._generate(input_ids=first.sequences, cache=cache, max_new_tokens=4)
        self.assertEqual(continued.tolist(), self._reference_greedy(self.input_ids, steps=8).tolist())

    def test_sampling_draws_each_token_from_the_kept_part_of_the_models_distribution(self):
        """Sampled through the cache, step by step: every drawn token is in the top-k / top-p set that a full
        forward pass over the tokens before it gives, and the draws follow the seed."""
        def sample(seed):  # temperature 4: this model's N(0, 1) embeddings make its next token nearly certain
            torch.manual_seed(seed)
            return self._generate(input_ids=self.input_ids, do_sample=True, top_k=10, top_p=0.9, temperature=4.0)

        out = sample(1)
        self.assertEqual(out.tolist(), sample(1).tolist())
        self.assertTrue(any(out.tolist() != sample(seed).tolist() for seed in (2, 3)))
        with torch.no_grad():
            probs = (self.model(out, use_cache=False).logits[:, 4:-1] / 4.0).softmax(-1)
        sorted_probs, order = probs.sort(-1, descending=True)
        kept = (sorted_probs.cumsum(-1) - sorted_probs < 0.9)  # the nucleus: mass before each token under 0.9
        kept[..., 10:] = False  # and the top 10
        drawn = out[:, 5:]
        rank = (order == drawn[..., None]).float().argmax(-1)
        self.assertTrue(kept.gather(-1, rank[..., None]).all(), f"a token outside top-k/top-p was drawn: {drawn}")

    def test_prompt_lookup_and_assisted(self):
        ids = self.input_ids[:1]
        expected = self._generate(input_ids=ids).tolist()
        self.assertEqual(self._generate(input_ids=ids, prompt_lookup_num_tokens=3).tolist(), expected)
        self.assertEqual(self._generate(input_ids=ids, assistant_model=self.model).tolist(), expected)
