"""The model's and the processor's modality tables (one per folder that travels as remote code) agree,
and the presets' placeholder token ids are the ones a processor gives a tokenizer that lacks them."""

from tokenizers import Tokenizer, models
from transformers import BlipImageProcessor, PreTrainedTokenizerFast

from xllm.modeling_xllm import model_modalities
from xllm.modeling_xllm.configuration_presets import placeholder_token_ids
from xllm.processing import processor_modalities
from xllm.processing.processing_xllm import XLLMProcessor
from xllm.processing.video_processing_xllm import XLLMVideoProcessor
from xllm.testing import tiny_qformer_tokenizer


def test_both_tables_have_the_same_modalities_in_the_same_order():
    assert list(model_modalities.MODALITIES) == list(processor_modalities.MODALITIES)


def test_both_tables_agree_on_each_modalitys_layout_and_model_inputs():
    for modality, model_row in model_modalities.MODALITIES.items():
        processor_row = processor_modalities.MODALITIES[modality]
        assert processor_row.layout == model_row.layout, modality
        expected = tuple(name for name in (model_row.input_name, model_row.mask_name) if name is not None)
        assert processor_row.outputs == expected, modality
        assert processor_row.target_lengths == model_row.target_lengths_name, modality
        assert model_modalities.placeholder(modality) == processor_modalities.placeholder(modality)


def test_a_processor_gives_a_fresh_tokenizer_the_presets_placeholder_ids():
    vocab = {f"word{i}": i for i in range(100)}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="word0")),
        unk_token="word0",
        pad_token="word1",
    )
    processor = XLLMProcessor(
        image_processor=BlipImageProcessor(),
        video_processor=XLLMVideoProcessor(),
        tokenizer=tokenizer,
        qformer_tokenizer=tiny_qformer_tokenizer(),
    )
    expected = placeholder_token_ids(len(vocab))
    assert {f"{m}_token_id": token_id for m, token_id in processor.placeholder_ids.items()} == expected


def test_every_modality_names_the_files_a_chat_upload_of_it_may_be():
    for modality, row in processor_modalities.MODALITIES.items():
        assert row.file_suffixes and all(suffix.startswith(".") for suffix in row.file_suffixes), modality
    rows = processor_modalities.MODALITIES
    assert rows["speech"].file_suffixes == rows["audio"].file_suffixes
