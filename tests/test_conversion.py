"""BLIP-2 / InstructBLIP (transformers) and LAVIS X-InstructBLIP checkpoints converted into X-LLM."""

import argparse
import os

import numpy as np
import pytest
import torch
from transformers import (
    AutoModelForMultimodalLM,
    AutoProcessor,
    Blip2Config,
    Blip2ForConditionalGeneration,
    Blip2Processor,
    BlipImageProcessor,
    InstructBlipConfig,
    InstructBlipForConditionalGeneration,
    InstructBlipProcessor,
)

import xllm  # noqa: F401  (registers the Auto classes)
from xllm.commands import convert
from xllm.modeling_xllm.convert_lavis import convert_lavis_checkpoint, load_lavis_interface
from xllm.modeling_xllm.modeling_qformer import QFormerInterface
from xllm.testing import tiny_model_and_processor, tiny_qformer_tokenizer, tiny_tokenizer

WIDTH = 32
VISION = dict(
    hidden_size=WIDTH,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    image_size=32,
    patch_size=8,
)
# transformers' BLIP-2 vision configs use 1e-6, LAVIS' ln_vision PyTorch's 1e-5: the converted interface
# takes the source's, so both convert exactly.
VISION_EPS = (1e-6, 1e-5)
QFORMER = dict(hidden_size=WIDTH, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
TEXT_MODELS = {
    "instructblip": dict(model_type="llama", intermediate_size=64, num_key_value_heads=2),
    "blip2": dict(model_type="opt", ffn_dim=64, word_embed_proj_dim=WIDTH),
}
MODEL_CLASSES = {
    "instructblip": (InstructBlipConfig, InstructBlipForConditionalGeneration),
    "blip2": (Blip2Config, Blip2ForConditionalGeneration),
}
NUM_QUERIES = 4
PROMPT = "what colour is the circle ?"


def randomize_(model: torch.nn.Module) -> None:
    """Weights of unit-ish scale everywhere (the default init makes vision features nearly constant)."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.normal_(0.0, 0.1)
            if "norm" in name.lower() and name.endswith("weight"):
                parameter.add_(1.0)


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="xllm")
    convert.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.run(args)


def build_original(kind: str, directory, layer_norm_eps: float = 1e-6) -> None:
    """A tiny random-weight transformers model and its processor, saved to `directory`."""
    tokenizer, qformer_tokenizer = tiny_tokenizer(), tiny_qformer_tokenizer()
    config_class, model_class = MODEL_CLASSES[kind]
    text = dict(
        hidden_size=WIDTH,
        num_hidden_layers=2,
        num_attention_heads=4,
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **TEXT_MODELS[kind],
    )
    config = config_class(
        vision_config=dict(VISION, layer_norm_eps=layer_norm_eps),
        qformer_config=dict(QFORMER, vocab_size=len(qformer_tokenizer), max_position_embeddings=64),
        text_config=text,
        num_query_tokens=NUM_QUERIES,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(0)
    model = model_class(config).eval()
    randomize_(model)
    model.save_pretrained(directory)
    image_processor = BlipImageProcessor(size={"height": 32, "width": 32})
    if kind == "instructblip":
        processor = InstructBlipProcessor(
            image_processor, tokenizer, qformer_tokenizer, num_query_tokens=NUM_QUERIES
        )
    else:
        processor = Blip2Processor(image_processor, tokenizer, num_query_tokens=NUM_QUERIES)
    processor.save_pretrained(directory)


@pytest.fixture(
    scope="module",
    params=[(kind, eps) for kind in ("instructblip", "blip2") for eps in VISION_EPS],
    ids=lambda param: f"{param[0]}-eps{param[1]:g}",
)
def converted(request, tmp_path_factory):
    """(kind, original model, original processor, converted model, converted processor)."""
    kind, eps = request.param
    source = tmp_path_factory.mktemp(f"{kind}_original")
    output = tmp_path_factory.mktemp(f"{kind}_xllm")
    build_original(kind, source, layer_norm_eps=eps)
    assert run_cli("convert", kind, str(source), str(output)) == 0
    original = MODEL_CLASSES[kind][1].from_pretrained(source).eval()
    original_processor = AutoProcessor.from_pretrained(source)
    model = AutoModelForMultimodalLM.from_pretrained(output).eval()
    return kind, original, original_processor, model, AutoProcessor.from_pretrained(output)


def original_inputs(processor) -> dict:
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    return dict(processor(images=[image], text=[PROMPT], return_tensors="pt"))


def test_converted_model_gives_the_same_logits_as_the_original(converted):
    _, original, original_processor, model, _ = converted
    inputs = original_inputs(original_processor)
    with torch.no_grad():
        expected = original(**inputs).logits
        actual = model(**inputs).logits
    assert actual.shape == expected.shape
    assert expected.std() > 0.1  # the comparison is not between two near-constant outputs
    torch.testing.assert_close(actual, expected, atol=1e-6, rtol=0)


def test_converted_model_generates_the_same_greedy_tokens(converted):
    _, original, original_processor, model, _ = converted
    inputs = original_inputs(original_processor)
    settings = dict(max_new_tokens=8, do_sample=False, min_new_tokens=8)
    expected = original.generate(**inputs, **settings)
    actual = model.generate(**inputs, **settings)
    assert actual.tolist() == expected.tolist()


def test_interface_layer_norm_reproduces_the_vision_post_layernorm(converted):
    _, original, original_processor, model, _ = converted
    pixel_values = original_inputs(original_processor)["pixel_values"]
    with torch.no_grad():
        expected = original.vision_model(pixel_values).last_hidden_state
        features = model.model.encode_media("image", pixel_values).features
        actual = model.model.interfaces["image"].encoder_layer_norm(features)
    assert (
        model.config.image_interface_config.encoder_layer_norm_eps
        == original.config.vision_config.layer_norm_eps
    )
    torch.testing.assert_close(actual, expected, atol=1e-6, rtol=0)


def test_only_instructblip_converts_to_an_instruction_aware_interface(converted):
    kind, _, _, model, _ = converted
    assert model.config.image_interface_config.instruction_aware == (kind == "instructblip")
    assert model.config.image_interface_config.encoder_feature_layer == -1


def test_converted_processor_reproduces_the_original_inputs(converted):
    _, _, original_processor, _, processor = converted
    expected = original_inputs(original_processor)
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    # BLIP puts the image tokens before the tokenized prompt (BOS included, where the tokenizer adds
    # one); written out that way, our processor gives the same sequence.
    tokenizer = processor.tokenizer
    bos = tokenizer.bos_token if tokenizer(PROMPT)["input_ids"][0] == tokenizer.bos_token_id else ""
    text = f"<image>{bos}{PROMPT}"
    actual = processor(images=[image], text=text, add_special_tokens=False, instructions=[PROMPT])
    assert actual["input_ids"].tolist() == expected["input_ids"].tolist()
    torch.testing.assert_close(actual["pixel_values"], expected["pixel_values"])
    if "qformer_input_ids" in expected:
        assert actual["qformer_input_ids"].tolist() == expected["qformer_input_ids"].tolist()


# LAVIS X-InstructBLIP checkpoints (lavis/models/blip2_models/blip2_vicuna_xinstruct.py): the keys
# a per-modality file holds, written out here from LAVIS' module names.
def lavis_state_dict(
    prefix: str, layers: int = 2, queries: int = 4, vocab: int = 60, positions: int = 64
) -> dict[str, torch.Tensor]:
    hidden, intermediate, encoder, llm = WIDTH, 64, WIDTH, WIDTH
    generator = torch.Generator().manual_seed(0)

    def tensor(*shape):
        return torch.randn(*shape, generator=generator)

    def linear(name, out_size, in_size):
        return {f"{name}.weight": tensor(out_size, in_size), f"{name}.bias": tensor(out_size)}

    def layer_norm(name, size):
        return {f"{name}.weight": tensor(size), f"{name}.bias": tensor(size)}

    bert = f"{prefix}Qformer.bert."
    state = {
        f"{prefix}query_tokens": tensor(1, queries, hidden),
        **layer_norm(f"{prefix}ln", encoder),
        **linear(f"{prefix}llm_proj", llm, hidden),
        f"{bert}embeddings.word_embeddings.weight": tensor(vocab, hidden),
        f"{bert}embeddings.position_embeddings.weight": tensor(positions, hidden),
        f"{bert}embeddings.position_ids": torch.arange(positions)[None],
        **layer_norm(f"{bert}embeddings.LayerNorm", hidden),
        **linear(f"{prefix}Qformer.cls.predictions.transform.dense", hidden, hidden),
    }
    for i in range(layers):
        layer = f"{bert}encoder.layer.{i}."
        for attention, key_size in (("attention", hidden), ("crossattention", encoder)):
            state.update(linear(f"{layer}{attention}.self.query", hidden, hidden))
            state.update(linear(f"{layer}{attention}.self.key", hidden, key_size))
            state.update(linear(f"{layer}{attention}.self.value", hidden, key_size))
            state.update(linear(f"{layer}{attention}.output.dense", hidden, hidden))
            state.update(layer_norm(f"{layer}{attention}.output.LayerNorm", hidden))
        for suffix in ("", "_query"):
            state.update(linear(f"{layer}intermediate{suffix}.dense", intermediate, hidden))
            state.update(linear(f"{layer}output{suffix}.dense", hidden, intermediate))
            state.update(layer_norm(f"{layer}output{suffix}.LayerNorm", hidden))
    return state


def test_lavis_checkpoint_converts_and_loads_with_no_missing_or_unexpected_keys(tmp_path):
    state = lavis_state_dict("video_")
    state.update({"audio_query_tokens": torch.zeros(1, 4, WIDTH)})  # another modality's part is left out
    path = tmp_path / "video_qformer.pth"
    torch.save({"model": state}, path)
    conversion = convert_lavis_checkpoint(path, "video", num_attention_heads=4)
    config, converted = conversion.config, conversion.state_dict
    assert conversion.skipped["audio_query_tokens"].startswith("other-modality:")
    assert conversion.skipped["video_Qformer.cls.predictions.transform.dense.weight"].startswith(
        "qformer-lm-head:"
    )
    assert (config.num_query_tokens, config.num_hidden_layers, config.cross_attention_frequency) == (4, 2, 1)
    assert config.instruction_aware
    result = QFormerInterface(config).load_state_dict(converted, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    torch.testing.assert_close(converted["adapter.weight"], state["video_llm_proj.weight"])
    torch.testing.assert_close(
        converted["qformer.layers.1.cross_attention.key.weight"],
        state["video_Qformer.bert.encoder.layer.1.crossattention.self.key.weight"],
    )
    torch.testing.assert_close(
        converted["qformer.layers.0.query_feed_forward.layer_norm.bias"],
        state["video_Qformer.bert.encoder.layer.0.output_query.LayerNorm.bias"],
    )


def test_lavis_cli_loads_a_checkpoint_into_a_saved_model(tmp_path):
    model, processor = tiny_model_and_processor()
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    interface = model.config.image_interface_config
    state = lavis_state_dict(
        "image_", vocab=interface.vocab_size, positions=interface.max_position_embeddings
    )
    torch.save({"model": state}, tmp_path / "image_qformer.pth")
    args = [str(tmp_path / "image_qformer.pth"), str(tmp_path / "out"), "--model", str(tmp_path / "model")]
    assert run_cli("convert", "lavis", *args, "--modality", "image") == 0
    loaded = AutoModelForMultimodalLM.from_pretrained(tmp_path / "out").model.interfaces["image"]
    torch.testing.assert_close(loaded.query_tokens.data, state["image_query_tokens"])
    torch.testing.assert_close(loaded.encoder_layer_norm.weight.data, state["image_ln.weight"])


def test_lavis_checkpoint_of_the_wrong_size_is_refused(tmp_path):
    model, _ = tiny_model_and_processor()
    torch.save({"model": lavis_state_dict("image_", queries=6)}, tmp_path / "image_qformer.pth")
    with pytest.raises(
        ValueError, match=r"`image_query_tokens` \(our `query_tokens`\) has shape \(1, 6, 32\)"
    ):
        load_lavis_interface(model, tmp_path / "image_qformer.pth", "image")


class CodeOnUnpickle:
    def __reduce__(self):
        return (os.system, ("echo this should never run",))


def test_pickle_with_code_in_it_is_refused(tmp_path):
    path = tmp_path / "image_qformer.pth"
    torch.save({"model": {"image_query_tokens": torch.zeros(1, 4, WIDTH)}, "payload": CodeOnUnpickle()}, path)
    with pytest.raises(ValueError, match="could run code"):
        convert_lavis_checkpoint(path, "image")
