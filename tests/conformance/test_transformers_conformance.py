"""transformers' own common tests, run on X-LLM the way transformers tests LLaVA and InstructBLIP.

`ModelTesterMixin`, `ConfigTester` and `ProcessorTesterMixin` come from the sdist of the installed
transformers version (see `transformers_sdist.py`, which also lists the stand-ins for the modules the
sdist lacks). Every test skipped here says why, as transformers' own model test files do.

Patched in this file: transformers' static model-name tables (`MODEL_MAPPING_NAMES`,
`MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES`) get X-LLM's entries, because the mixins decide from them
which classes are base models (not trained, no labels) and which take labels.
"""

import unittest
import unittest.mock

import numpy as np
from transformers.models.auto import modeling_auto
from transformers.processing_utils import MODALITY_TO_AUTOPROCESSOR_MAPPING
from transformers_sdist import importable_tests

from xllm.modeling_xllm import XLLMConfig, XLLMForConditionalGeneration, XLLMModel
from xllm.processing import (
    XLLMAudioFeatureExtractor,
    XLLMPointCloudFeatureExtractor,
    XLLMProcessor,
    XLLMVideoProcessor,
)
from xllm.testing import TINY_POINTS, tiny_config, tiny_processor, tiny_qformer_tokenizer, tiny_tokenizer

importable_tests()
from transformers_tests.test_configuration_common import ConfigTester  # noqa: E402
from transformers_tests.test_modeling_common import ModelTesterMixin  # noqa: E402
from transformers_tests.test_processing_common import ProcessorTesterMixin  # noqa: E402

modeling_auto.MODEL_MAPPING_NAMES["xllm"] = "XLLMModel"
modeling_auto.MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES["xllm"] = "XLLMForConditionalGeneration"


class XLLMModelTester:
    """A tiny X-LLM (image, video and audio Q-Formers reading instructions, 2-layer Llama) and a batch made by
    its processor: each sample has one image, one video and one audio clip before its question."""

    def __init__(self, parent, batch_size: int = 3, num_query_tokens: int = 2, num_frames: int = 2):
        self.parent = parent
        self.batch_size = batch_size
        self.num_query_tokens = num_query_tokens
        self.num_frames = num_frames
        self.is_training = True
        config = self.get_config()
        self.processor = tiny_processor(num_query_tokens, num_frames=num_frames, modalities=config.modalities)
        self.vocab_size = config.text_config.vocab_size
        self.hidden_size = config.text_config.hidden_size
        self.num_hidden_layers = config.text_config.num_hidden_layers
        self.num_attention_heads = config.text_config.num_attention_heads
        self.seq_length = self.prepare_config_and_inputs_for_common()[1]["input_ids"].shape[1]

    def get_config(self) -> XLLMConfig:
        config = tiny_config(
            num_query_tokens=self.num_query_tokens,
            num_video_frames=self.num_frames,
            speech_model_type=None,
            point_clouds=False,
        )
        # The common tests give `get_video_features` / `get_audio_features` only the media (they keep
        # `qformer_input_ids` for images alone): video and audio read no instruction here, as X-LLM's do.
        config.video_interface_config.instruction_aware = False
        config.audio_interface_config.instruction_aware = False
        return config

    def prepare_config_and_inputs_for_common(self):
        config = self.get_config()
        generator = np.random.default_rng(0)
        questions = ["what colour is the circle ?", "which one is moving ?", "what sound do you hear ?"]
        inputs = self.processor(
            text=[f"<image> <video> <audio> {questions[i % 3]}" for i in range(self.batch_size)],
            images=[generator.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(self.batch_size)],
            videos=[
                generator.integers(0, 256, (self.num_frames, 32, 32, 3), dtype=np.uint8)
                for _ in range(self.batch_size)
            ],
            audio=[
                generator.standard_normal(8000 + 4000 * i).astype(np.float32) for i in range(self.batch_size)
            ],
            padding_side="right",
        )
        return config, dict(inputs)


class XLLMForConditionalGenerationModelTest(ModelTesterMixin, unittest.TestCase):
    all_model_classes = (XLLMModel, XLLMForConditionalGeneration)
    _is_composite = True
    # The mixin dates models by a copyright line, which our files do not carry; ours is new.
    test_can_init_all_missing_weights_before_2023 = True
    # The mixin reads the audio batch size from `input_features` / `input_values`; our audio interface's input is
    # `audio_features` (audios, windows, frames, bins). tests/test_transformers_conventions.py checks its shapes.
    skip_test_audio_features_output_shape = True

    def setUp(self):
        self.model_tester = XLLMModelTester(self)
        self.config_tester = ConfigTester(self, config_class=XLLMConfig, has_text_modality=False)

    def test_config(self):
        self.config_tester.run_common_tests()

    FROZEN_ENCODERS_STAY_IN_EVAL = (
        "Frozen encoders stay in eval mode under `model.train()` (as BLIP-2's, LAVIS blip2.py:187 "
        "`disabled_train`); the test unfreezes them only after `train()`, and the layer it watches is the first "
        "encoder layer, which therefore never checkpoints. tests/test_model.py checks checkpointing of what trains."
    )

    @unittest.skip(FROZEN_ENCODERS_STAY_IN_EVAL)
    def test_training_gradient_checkpointing(self):
        pass

    @unittest.skip(FROZEN_ENCODERS_STAY_IN_EVAL)
    def test_training_gradient_checkpointing_use_reentrant_true(self):
        pass

    @unittest.skip(FROZEN_ENCODERS_STAY_IN_EVAL)
    def test_training_gradient_checkpointing_use_reentrant_false(self):
        pass

    @unittest.skip(
        "transformers' init of custom-code models (`_initialize_weights(..., is_custom_code=True)`, "
        "modeling_utils.py:2371) counts a module without parameters of its own, CLIP's attention block, as "
        "initialized, so `from_pretrained` with missing weights skips CLIP's attention-specific std for every model "
        "outside the transformers package; the same CLIP inside LLaVA (not custom code) gets it."
    )
    def test_can_init_all_missing_weights(self):
        pass

    @unittest.skip(
        "Needs `GenerationTesterMixin` (tests/generation/test_utils.py), which the sdist lacks; "
        "tests/test_generation_equivalence.py checks what it would."
    )
    def test_generation_tester_mixin_inheritance(self):
        pass


OWN_FEATURE_EXTRACTOR_ATTRIBUTES = (
    "speech_feature_extractor",
    "audio_feature_extractor",
    "point_cloud_feature_extractor",
)


class SavedFeatureExtractor:
    """Reads one of our feature extractors back from a saved processor folder (`from_pretrained(folder)`,
    as an Auto class would); one subclass per attribute, named after it."""

    attribute: str

    @classmethod
    def from_pretrained(cls, folder, **kwargs):
        return getattr(XLLMProcessor.from_pretrained(folder, **kwargs), cls.attribute)


for _attribute in OWN_FEATURE_EXTRACTOR_ATTRIBUTES:
    _name = SavedFeatureExtractor.__name__ + _attribute.title().replace("_", "")
    globals()[_name] = type(_name, (SavedFeatureExtractor,), {"attribute": _attribute})


class XLLMProcessorTest(ProcessorTesterMixin, unittest.TestCase):
    processor_class = XLLMProcessor

    def run_without_remote_code_registration(self, test):
        """`import xllm` registers the processor for remote code, so saving sets `auto_map` on the instance
        that saved (transformers' `custom_object_save`) while loading drops it (`from_args_and_dict`,
        processing_utils.py:1562): the two `to_dict()`s differ by `auto_map` alone. The round trip is checked
        as transformers' own processors have it; tests/test_sharing.py checks the remote-code one."""
        with unittest.mock.patch.object(XLLMProcessor, "_auto_class", None):
            test()

    @unittest.skip(
        "The mixin compares the helper's default count with a call made with `do_sample_frames=False`; our "
        "processor samples `num_frames` frames by default (the count the video interface is built for), so the two "
        "differ by design. tests/test_transformers_conventions.py checks the helper against calls either way."
    )
    def test_get_num_multimodal_tokens_matches_processor_call_video(self):
        pass

    def test_replacement_offsets(self):
        """The mixin runs this check only for processors of the base-class protocol (`__call__` inherited,
        `replace_image_token` / `replace_video_token` overridden: `does_processor_return_mm_offsets`); ours has
        its own `__call__`, which expands placeholders on token ids and returns `text_replacement_offsets`
        itself. The mixin's check runs with that gate answered for our processor."""
        with unittest.mock.patch.object(type(self), "does_processor_return_mm_offsets", lambda *args: True):
            super().test_replacement_offsets()

    def test_processor_from_and_save_pretrained(self):
        self.run_without_remote_code_registration(super().test_processor_from_and_save_pretrained)

    def test_processor_from_and_save_pretrained_as_nested_dict(self):
        """The mixin reloads each sub-processor through the Auto class its attribute name maps to in
        transformers' auto-processor table (`MODALITY_TO_AUTOPROCESSOR_MAPPING`), which knows one feature
        extractor per processor; ours (speech, audio, point clouds) are patched in for this test as loaders
        reading them back from the saved processor. Image and video processors and both tokenizers go
        through transformers' Auto classes, as in the mixin."""
        own = {
            attribute: (__name__, SavedFeatureExtractor.__name__ + attribute.title().replace("_", ""))
            for attribute in OWN_FEATURE_EXTRACTOR_ATTRIBUTES
        }
        with unittest.mock.patch.dict(MODALITY_TO_AUTOPROCESSOR_MAPPING._MAPPING_NAMES, own):
            self.run_without_remote_code_registration(
                super().test_processor_from_and_save_pretrained_as_nested_dict
            )

    @classmethod
    def _setup_image_processor(cls):
        from transformers import BlipImageProcessor

        return BlipImageProcessor(size={"height": 32, "width": 32})

    @classmethod
    def _setup_video_processor(cls):
        return XLLMVideoProcessor(size={"height": 32, "width": 32}, num_frames=4)

    @classmethod
    def _setup_tokenizer(cls):
        return tiny_tokenizer()

    @classmethod
    def _setup_qformer_tokenizer(cls):
        return tiny_qformer_tokenizer()

    @classmethod
    def _setup_speech_feature_extractor(cls):
        from xllm.processing.feature_extraction_speech_xllm import XLLMSpeechFeatureExtractor

        return XLLMSpeechFeatureExtractor()

    @classmethod
    def _setup_audio_feature_extractor(cls):
        return XLLMAudioFeatureExtractor(window_seconds=0.64)

    @classmethod
    def _setup_point_cloud_feature_extractor(cls):
        return XLLMPointCloudFeatureExtractor(num_points=TINY_POINTS, in_channels=3)

    @staticmethod
    def prepare_processor_dict():
        # The modalities the common tests feed (they know images, videos and audio).
        return {
            "num_query_tokens": {"image": 4, "video": 4, "audio": 4},
            "modalities": ["image", "video", "audio"],
        }

    audio_input_name = "audio_features"  # the audio interface's input (windows of BEATs fbank)

    def get_subprocessor_name(self, modality: str, attributes: list) -> str:
        """The sound sub-processor of the audio interface is `audio_feature_extractor` (speech has its own)."""
        if modality == "audio":
            return "audio_feature_extractor"
        return super().get_subprocessor_name(modality, attributes)

    @property
    def video_sampling_expectations(self):
        """On our stand-in video (16 frames, 8 per second, see stand_ins/fetch_hub_objects_for_ci.py; the
        mixin's figures are for the Hub's video). Without sampling options the processor takes its own
        `num_frames` (4), the count the model's video interface is built for."""
        return [
            {"num_frames": 3, "fps": None, "expected_dim": 1, "output_length": 3},
            {"num_frames": None, "fps": 3, "expected_dim": 1, "output_length": 6},
            {"do_sample_frames": False, "expected_dim": 1, "output_length": 16},
            {"expected_dim": 1, "output_length": 4},
        ]

    def get_component(self, attribute, **kwargs):
        """transformers' auto-processor table (`MODALITY_TO_AUTOPROCESSOR_MAPPING`) names its own attributes
        only; ours (`speech_feature_extractor`, `audio_feature_extractor`, `point_cloud_feature_extractor`)
        are read back from the saved processor, where they are."""
        if attribute in OWN_FEATURE_EXTRACTOR_ATTRIBUTES:
            return getattr(self.get_processor(), attribute)
        return super().get_component(attribute, **kwargs)
