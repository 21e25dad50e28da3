"""X-InstructBLIP's released LAVIS checkpoints load into preset-built models (`xllm convert lavis`).

The released files are named in `lavis/configs/models/blip2/blip2_xinstruct_vicuna{7b,13b}.yaml` and
`projects/xinstructblip/demo/configs/*.yaml`. Their keys are what LAVIS' runner saves
(`lavis/runners/runner_iter.py:169-193`: the model's state dict less its frozen parameters, buffers
kept) for a run over one modality (`lavis/projects/xinstruct_blip/train/vicuna*/*.yaml`,
`modalities: [...]`). Each key pattern below is written from LAVIS' module names, with the file and line
it comes from (files under `lavis/models/`; `blip2_vicuna_xinstruct.py` is in `blip2_models/`), the
shape in named sizes, and the X-LLM key it must land on (or the skip rule that drops it).

Patterns: `{m}` the LAVIS modality (`image`, `video`, `audio`, `pc`), `{i}` every Q-Former layer, `{c}`
the cross-attention layers (every 2nd from 0: `cross_attention_freq=2`, blip2_vicuna_xinstruct.py:2463,
Qformer.py:386-389), `{l}` every LLM layer.
"""

import math

import numpy as np
import pytest
import torch
from conftest import random_image, random_video
from transformers import Blip2VisionConfig, LlamaConfig

from xllm import XLLMConfig, XLLMForConditionalGeneration, XLLMInterfaceConfig
from xllm.modeling_xllm.configuration_beats import XLLMBeatsConfig
from xllm.modeling_xllm.configuration_presets import preset_config
from xllm.modeling_xllm.convert_lavis import (
    check_fits,
    convert_lavis_checkpoint,
    convert_lavis_state_dict,
    load_lavis_interface,
)
from xllm.modeling_xllm.model_modalities import default_modality_cues
from xllm.modeling_xllm.modeling_linear_interface import LinearInterface
from xllm.modeling_xllm.modeling_xllm import build_interface
from xllm.testing import tiny_point_cloud_config, tiny_processor, tiny_tokenizer

QF = "{m}_Qformer.bert."
LAYER = QF + "encoder.layer.{i}."
CROSS = QF + "encoder.layer.{c}.crossattention."
OURS = "qformer.layers.{i}."
OURS_CROSS = "qformer.layers.{c}.cross_attention."

# (LAVIS key pattern, shape in named sizes, X-LLM interface key or "skip:<rule>", where LAVIS defines it)
QFORMER_FILE = [
    ("{m}_query_tokens", (1, "queries", "qformer"), "query_tokens", "blip2_vicuna_xinstruct.py:2472, 362"),
    ("{m}_ln.weight", ("encoder",), "encoder_layer_norm.weight", "blip2_vicuna_xinstruct.py:2377, 279"),
    ("{m}_ln.bias", ("encoder",), "encoder_layer_norm.bias", "blip2_vicuna_xinstruct.py:2377, 279"),
    ("{m}_llm_proj.weight", ("llm", "qformer"), "adapter.weight", "blip2_vicuna_xinstruct.py:2433, 440-446"),
    ("{m}_llm_proj.bias", ("llm",), "adapter.bias", "blip2_vicuna_xinstruct.py:2433, 440-446"),
    (
        QF + "embeddings.word_embeddings.weight",
        ("vocab", "qformer"),
        "qformer.word_embeddings.weight",
        "Qformer.py:56; vocab_size += 1 blip2_vicuna_xinstruct.py:2470, resize 359",
    ),
    (
        QF + "embeddings.position_embeddings.weight",
        ("positions", "qformer"),
        "qformer.position_embeddings.weight",
        "Qformer.py:59",
    ),
    (QF + "embeddings.position_ids", (1, "positions"), "skip:qformer-position-ids", "Qformer.py:69"),
    (
        QF + "embeddings.LayerNorm.weight",
        ("qformer",),
        "qformer.embedding_layer_norm.weight",
        "Qformer.py:65",
    ),
    (QF + "embeddings.LayerNorm.bias", ("qformer",), "qformer.embedding_layer_norm.bias", "Qformer.py:65"),
    *[
        (
            LAYER + f"attention.self.{p}.{t}",
            shape,
            OURS + f"self_attention.{p}.{t}",
            "Qformer.py:127, 132-133, 295",
        )
        for p in ("query", "key", "value")
        for t, shape in (("weight", ("qformer", "qformer")), ("bias", ("qformer",)))
    ],
    (
        LAYER + "attention.output.dense.weight",
        ("qformer", "qformer"),
        OURS + "self_attention.output.weight",
        "Qformer.py:281, 296",
    ),
    (
        LAYER + "attention.output.dense.bias",
        ("qformer",),
        OURS + "self_attention.output.bias",
        "Qformer.py:281, 296",
    ),
    (
        LAYER + "attention.output.LayerNorm.weight",
        ("qformer",),
        OURS + "self_attention.layer_norm.weight",
        "Qformer.py:282",
    ),
    (
        LAYER + "attention.output.LayerNorm.bias",
        ("qformer",),
        OURS + "self_attention.layer_norm.bias",
        "Qformer.py:282",
    ),
    (CROSS + "self.query.weight", ("qformer", "qformer"), OURS_CROSS + "query.weight", "Qformer.py:127, 390"),
    (CROSS + "self.query.bias", ("qformer",), OURS_CROSS + "query.bias", "Qformer.py:127, 390"),
    *[
        (CROSS + f"self.{p}.{t}", shape, OURS_CROSS + f"{p}.{t}", "Qformer.py:129-130 (encoder_width), 390")
        for p in ("key", "value")
        for t, shape in (("weight", ("qformer", "encoder")), ("bias", ("qformer",)))
    ],
    (
        CROSS + "output.dense.weight",
        ("qformer", "qformer"),
        OURS_CROSS + "output.weight",
        "Qformer.py:281, 390",
    ),
    (CROSS + "output.dense.bias", ("qformer",), OURS_CROSS + "output.bias", "Qformer.py:281, 390"),
    (
        CROSS + "output.LayerNorm.weight",
        ("qformer",),
        OURS_CROSS + "layer_norm.weight",
        "Qformer.py:282, 390",
    ),
    (CROSS + "output.LayerNorm.bias", ("qformer",), OURS_CROSS + "layer_norm.bias", "Qformer.py:282, 390"),
    *[
        entry
        for theirs, ours, line in (
            ("", "text_feed_forward", "396-397"),
            ("_query", "query_feed_forward", "399-400"),
        )
        for entry in (
            (
                LAYER + f"intermediate{theirs}.dense.weight",
                ("ffn", "qformer"),
                OURS + f"{ours}.intermediate.weight",
                f"Qformer.py:352, {line}",
            ),
            (
                LAYER + f"intermediate{theirs}.dense.bias",
                ("ffn",),
                OURS + f"{ours}.intermediate.bias",
                f"Qformer.py:352, {line}",
            ),
            (
                LAYER + f"output{theirs}.dense.weight",
                ("qformer", "ffn"),
                OURS + f"{ours}.output.weight",
                f"Qformer.py:367, {line}",
            ),
            (
                LAYER + f"output{theirs}.dense.bias",
                ("qformer",),
                OURS + f"{ours}.output.bias",
                f"Qformer.py:367, {line}",
            ),
            (
                LAYER + f"output{theirs}.LayerNorm.weight",
                ("qformer",),
                OURS + f"{ours}.layer_norm.weight",
                f"Qformer.py:368, {line}",
            ),
            (
                LAYER + f"output{theirs}.LayerNorm.bias",
                ("qformer",),
                OURS + f"{ours}.layer_norm.bias",
                f"Qformer.py:368, {line}",
            ),
        )
    ],
]
# The buffer of LAVIS' own (frozen) Llama, kept by the runner: in every file.
LLAMA_BUFFERS = [
    (
        "llm_model.model.layers.{l}.self_attn.rotary_emb.inv_freq",
        ("rotary",),
        "skip:frozen-llama-buffer",
        "blip2_models/modeling_llama.py:98, 180; runner_iter.py:175-179",
    )
]
# BatchNorm statistics of the frozen ULIP-2 PointBERT (pc files only): ULIP_models.py:101, 214,
# point_encoder.py:119, dvae.py:181-192.
POINT_ENCODER_BUFFERS = [
    (
        f"pc_encoder.point_encoder.encoder.{conv}.1.{stat}",
        shape,
        "skip:frozen-point-encoder-batchnorm",
        f"dvae.py:{line}",
    )
    for conv, width, line in (("first_conv", 128, 183), ("second_conv", 512, 189))
    for stat, shape in (("running_mean", (width,)), ("running_var", (width,)), ("num_batches_tracked", ()))
]
# The linear ablation (`projection_only: True`, `proj_dim: 768`, train/vicuna7b/*_projection_only.yaml).
LINEAR_FILE = [
    ("{m}_ln.weight", ("encoder",), "encoder_layer_norm.weight", "blip2_vicuna_xinstruct.py:2377, 254-256"),
    ("{m}_ln.bias", ("encoder",), "encoder_layer_norm.bias", "blip2_vicuna_xinstruct.py:2377, 254-256"),
    (
        "{m}_projection.weight",
        ("queries*linear", "encoder"),
        "expand.weight",
        "blip2_vicuna_xinstruct.py:334-341",
    ),
    ("{m}_projection.bias", ("queries*linear",), "expand.bias", "blip2_vicuna_xinstruct.py:334-341"),
    ("{m}_llm_proj.weight", ("llm", "linear"), "adapter.weight", "blip2_vicuna_xinstruct.py:432-437"),
    ("{m}_llm_proj.bias", ("llm",), "adapter.bias", "blip2_vicuna_xinstruct.py:432-437"),
]

# Released file (under .../xinstructblip_checkpoints/) -> (preset, LAVIS modality, its keys).
RELEASED_FILES = {
    "vicuna7b/image_qformer.pth": ("x-instructblip-7b", "image", QFORMER_FILE + LLAMA_BUFFERS),
    "vicuna7b/video_qformer.pth": ("x-instructblip-7b", "video", QFORMER_FILE + LLAMA_BUFFERS),
    "vicuna7b/audio_qformer_improved.pth": ("x-instructblip-7b", "audio", QFORMER_FILE + LLAMA_BUFFERS),
    "vicuna7b/pc_qformer.pth": (
        "x-instructblip-7b",
        "pc",
        QFORMER_FILE + LLAMA_BUFFERS + POINT_ENCODER_BUFFERS,
    ),
    "vicuna13b/image_qformer.pth": ("x-instructblip-13b", "image", QFORMER_FILE + LLAMA_BUFFERS),
    "vicuna13b/video_qformer.pth": ("x-instructblip-13b", "video", QFORMER_FILE + LLAMA_BUFFERS),
    "vicuna13b/audio_qformer.pth": ("x-instructblip-13b", "audio", QFORMER_FILE + LLAMA_BUFFERS),
    "vicuna13b/pc_qformer.pth": (
        "x-instructblip-13b",
        "pc",
        QFORMER_FILE + LLAMA_BUFFERS + POINT_ENCODER_BUFFERS,
    ),
    "linear_projection_7b/image_qformer_linear.pth": (
        "x-instructblip-7b-linear",
        "image",
        LINEAR_FILE + LLAMA_BUFFERS,
    ),
    "linear_projection_7b/audio_qformer_linear.pth": (
        "x-instructblip-7b-linear",
        "audio",
        LINEAR_FILE + LLAMA_BUFFERS,
    ),
    "linear_projection_7b/pc_qformer_linear.pth": (
        "x-instructblip-7b-linear",
        "pc",
        LINEAR_FILE + LLAMA_BUFFERS + POINT_ENCODER_BUFFERS,
    ),
}
OUR_MODALITY = {"image": "image", "video": "video", "audio": "audio", "pc": "point_cloud"}

# The sizes the shapes are written in. Real: LAVIS' (BERT-base Q-Former, 32 queries, EVA ViT-g 1408,
# BEATs 768, ULIP-2 pc_projection 512, Vicuna 4096 / 5120 wide with 32 / 40 layers of head width 128).
COMMON = dict(queries=32, qformer=768, ffn=3072, layers=12, vocab=30523, positions=512, linear=768, rotary=64)
ENCODERS = dict(image=1408, video=1408, audio=768, pc=512)
REAL = {
    "x-instructblip-7b": dict(COMMON, llm=4096, llm_layers=32, **ENCODERS),
    "x-instructblip-13b": dict(COMMON, llm=5120, llm_layers=40, **ENCODERS),
    "x-instructblip-7b-linear": dict(COMMON, llm=4096, llm_layers=32, **ENCODERS),
}
# Reduced: every width small; vocabulary, positions and the cross-attention rhythm as the preset's.
REDUCED_COMMON = dict(
    queries=4, qformer=32, ffn=64, layers=2, vocab=30523, positions=512, linear=32, rotary=4
)
REDUCED_ENCODERS = dict(image=48, video=48, audio=40, pc=24)
REDUCED = {
    "x-instructblip-7b": dict(REDUCED_COMMON, llm=32, llm_layers=2, **REDUCED_ENCODERS),
    "x-instructblip-13b": dict(REDUCED_COMMON, llm=48, llm_layers=2, **REDUCED_ENCODERS),
    "x-instructblip-7b-linear": dict(REDUCED_COMMON, llm=32, llm_layers=2, **REDUCED_ENCODERS),
}


def expand(entries, modality: str, sizes: dict) -> list[tuple[str, tuple[int, ...], str]]:
    """(LAVIS key, shape, X-LLM key or skip rule) of every key the patterns stand for at these sizes."""
    sizes = dict(sizes, encoder=sizes[modality])

    def size(name):
        return name if isinstance(name, int) else math.prod(sizes[part] for part in name.split("*"))

    keys = []
    for pattern, shape, ours, _source in entries:
        indices = [{}]
        for name, values in (
            ("i", range(sizes["layers"])),
            ("c", range(0, sizes["layers"], 2)),
            ("l", range(sizes["llm_layers"])),
        ):
            if "{" + name + "}" in pattern:
                indices = [dict(index, **{name: value}) for index in indices for value in values]
        for index in indices:
            key = pattern.format(m=modality, **index)
            keys.append((key, tuple(size(n) for n in shape), ours.format(**index)))
    return keys


def synthetic_state_dict(file: str, sizes: dict, device: str = "cpu") -> dict[str, torch.Tensor]:
    """A file's `model` state dict with exactly the fixture's keys: distinct random values (meta tensors
    on `device="meta"`), integer buffers where LAVIS has them."""
    _, modality, entries = RELEASED_FILES[file]
    generator = torch.Generator().manual_seed(0)
    state = {}
    for key, shape, _ in expand(entries, modality, sizes):
        if device == "meta":
            state[key] = torch.empty(shape, device="meta")
        elif key.endswith("position_ids"):
            state[key] = torch.arange(shape[1])[None]
        elif key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000)
        else:
            state[key] = torch.randn(shape, generator=generator)
    return state


def save_file(path, state: dict, layout: str) -> None:
    """A file as LAVIS' runner writes it (runner_iter.py:181-187), or `{"model": ...}` alone."""
    if layout == "runner":
        optimizer = {
            "state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(2)}},
            "param_groups": [{"lr": 1e-5}],
        }
        checkpoint = {
            "model": state,
            "optimizer": optimizer,
            "config": {"model": {"arch": "blip2_vicuna_xinstruct"}},
        }
        checkpoint |= {"scaler": {"scale": 65536.0, "growth_factor": 2.0}, "iters": 65000}
    else:
        checkpoint = {"model": state}
    torch.save(checkpoint, path)


def reduced_preset_config(preset: str) -> XLLMConfig:
    """The preset with every width reduced (REDUCED), its structure kept: interface kinds, Q-Former
    vocabulary and positions, cross-attention every 2nd layer, the 3D encoder's single projected token."""
    full, sizes, tokenizer = preset_config(preset), REDUCED[preset], tiny_tokenizer()

    def interface(modality: str) -> XLLMInterfaceConfig:
        config = full.interface_config(modality)
        widths = dict(num_query_tokens=sizes["queries"], hidden_size=sizes["qformer"], num_attention_heads=4)
        if config.kind == "linear":
            return XLLMInterfaceConfig(
                kind="linear", linear_variant=config.linear_variant, instruction_aware=False, **widths
            )
        return XLLMInterfaceConfig(
            **widths,
            num_hidden_layers=sizes["layers"],
            intermediate_size=sizes["ffn"],
            cross_attention_frequency=config.cross_attention_frequency,
            instruction_aware=config.instruction_aware,
            vocab_size=config.vocab_size,
            max_position_embeddings=config.max_position_embeddings,
        )

    point_cloud = full.point_cloud_config
    return XLLMConfig(
        text_config=LlamaConfig(
            hidden_size=sizes["llm"],
            num_hidden_layers=sizes["llm_layers"],
            num_attention_heads=4,
            num_key_value_heads=4,
            intermediate_size=64,
            vocab_size=len(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        ),
        vision_config=Blip2VisionConfig(
            hidden_size=sizes["image"],
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            image_size=32,
            patch_size=8,
        ),
        audio_config=XLLMBeatsConfig(
            hidden_size=sizes["audio"],
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            patch_embedding_size=24,
            conv_pos_kernel_size=8,
            conv_pos_groups=4,
            num_buckets=16,
            max_distance=40,
        ),
        point_cloud_config=tiny_point_cloud_config(
            in_channels=point_cloud.in_channels, output=point_cloud.output, projection_size=sizes["pc"]
        ),
        **{f"{m}_interface_config": interface(m) for m in full.modalities},
        **{f"{m}_token_id": tokenizer.convert_tokens_to_ids(f"<{m}>") for m in full.modalities},
        num_video_frames=2,
        modality_cues=default_modality_cues(),
    )


def media_prompt(processor, modality: str) -> dict:
    media = {
        "image": dict(images=[random_image(0)]),
        "video": dict(videos=[random_video(2)]),
        "audio": dict(audio=[(0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)]),
        "point_cloud": dict(point_clouds=[np.random.default_rng(0).standard_normal((100, 3))]),
    }[modality]
    return processor(text=f"<{modality}> what colour is it ?", **media)


@pytest.fixture(scope="module")
def reduced_models():
    """preset -> (a reduced-width model built from the preset's shapes, its processor)."""
    built = {}
    for preset in REDUCED:
        torch.manual_seed(0)
        config = reduced_preset_config(preset)
        processor = tiny_processor(
            num_query_tokens=REDUCED[preset]["queries"],
            num_frames=2,
            modalities=config.modalities,
            modality_cues=config.modality_cues,
        )
        built[preset] = (XLLMForConditionalGeneration(config).eval(), processor)
    return built


@pytest.mark.parametrize("layout", ["runner", "model"])
@pytest.mark.parametrize("file", sorted(RELEASED_FILES))
def test_released_file_loads_every_tensor_where_it_belongs_and_generates(
    file, layout, reduced_models, tmp_path
):
    preset, lavis_modality, entries = RELEASED_FILES[file]
    model, processor = reduced_models[preset]
    state = synthetic_state_dict(file, REDUCED[preset])
    path = tmp_path / file.replace("/", "_")
    save_file(path, state, layout)

    conversion = load_lavis_interface(model, path)  # the modality is read off the file

    assert conversion.lavis_modality == lavis_modality
    interface = model.model.interfaces[OUR_MODALITY[lavis_modality]]
    loaded = interface.state_dict()
    expected_skips = {}
    for key, _, ours in expand(entries, lavis_modality, REDUCED[preset]):
        if ours.startswith("skip:"):
            expected_skips[key] = ours.removeprefix("skip:")
        else:
            torch.testing.assert_close(loaded[ours], state[key], rtol=0, atol=0, msg=f"{key} -> {ours}")
    mapped = {
        ours
        for _, _, ours in expand(entries, lavis_modality, REDUCED[preset])
        if not ours.startswith("skip:")
    }
    assert mapped == set(loaded)  # every interface tensor came from the file, none is left at its init
    runner_entries = {"[optimizer]", "[config]", "[scaler]", "[iters]"} if layout == "runner" else set()
    assert set(conversion.skipped) == set(expected_skips) | runner_entries
    for key, rule in expected_skips.items():
        assert conversion.skipped[key].startswith(rule + ":"), conversion.skipped[key]

    inputs = media_prompt(processor, OUR_MODALITY[lavis_modality])
    generated = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert generated.shape[1] == inputs["input_ids"].shape[1] + 3


@pytest.mark.parametrize("file", sorted(RELEASED_FILES))
def test_shapes_read_from_a_released_file_at_real_size_are_the_presets(file):
    preset, lavis_modality, _ = RELEASED_FILES[file]
    modality = OUR_MODALITY[lavis_modality]
    conversion = convert_lavis_state_dict(synthetic_state_dict(file, REAL[preset], device="meta"))
    expected = preset_config(preset).interface_config(modality)
    for name in (
        "kind",
        "linear_variant",
        "num_query_tokens",
        "hidden_size",
        "encoder_hidden_size",
        "output_hidden_size",
    ):
        assert getattr(conversion.config, name) == getattr(expected, name), name
    if expected.kind == "qformer":
        for name in (
            "num_hidden_layers",
            "intermediate_size",
            "cross_attention_frequency",
            "vocab_size",
            "max_position_embeddings",
            "instruction_aware",
        ):
            assert getattr(conversion.config, name) == getattr(expected, name), name
    with torch.device("meta"):
        interface = build_interface(expected)
    shapes = {key: tuple(t.shape) for key, t in conversion.state_dict.items()}
    assert shapes == {key: tuple(t.shape) for key, t in interface.state_dict().items()}
    check_fits(conversion, interface, file)  # raises on any difference


def test_a_13b_file_in_a_7b_model_names_the_key_the_shapes_and_the_preset_that_fits():
    conversion = convert_lavis_state_dict(
        synthetic_state_dict("vicuna13b/image_qformer.pth", REAL["x-instructblip-13b"], device="meta")
    )
    with torch.device("meta"):
        interface_7b = build_interface(preset_config("x-instructblip-7b").image_interface_config)
    with pytest.raises(ValueError) as error:
        check_fits(conversion, interface_7b, "image_qformer.pth")
    message = str(error.value)
    assert "`image_llm_proj.weight` (our `adapter.weight`) has shape (5120, 768)" in message
    assert "the model expects (4096, 768)" in message and "['x-instructblip-13b']" in message


def test_a_linear_file_in_a_qformer_model_says_which_kind_it_holds(reduced_models, tmp_path):
    model, _ = reduced_models["x-instructblip-7b"]
    path = tmp_path / "pc_qformer_linear.pth"
    save_file(
        path,
        synthetic_state_dict("linear_projection_7b/pc_qformer_linear.pth", REDUCED["x-instructblip-7b"]),
        "model",
    )
    with pytest.raises(ValueError, match=r"holds a linear \(lavis\) interface, the model's is qformer"):
        load_lavis_interface(model, path)


def test_a_key_no_rule_knows_is_refused_by_name(tmp_path):
    state = synthetic_state_dict("vicuna7b/image_qformer.pth", REDUCED["x-instructblip-7b"])
    with pytest.raises(ValueError, match=r"no known mapping and no skip rule: \['mystery_head.weight'\]"):
        convert_lavis_state_dict({**state, "mystery_head.weight": torch.zeros(2)})
    with pytest.raises(
        ValueError, match=r"interface keys with no known mapping: \['image_extra_gate.weight'\]"
    ):
        convert_lavis_state_dict({**state, "image_extra_gate.weight": torch.zeros(2)})


def test_an_unknown_runner_entry_is_refused(tmp_path):
    path = tmp_path / "image_qformer.pth"
    state = synthetic_state_dict("vicuna7b/image_qformer.pth", REDUCED["x-instructblip-7b"])
    torch.save({"model": state, "ema": {}}, path)
    with pytest.raises(ValueError, match=r"top-level entries \['ema'\]"):
        convert_lavis_checkpoint(path)


def test_another_modalitys_part_is_skipped_with_its_name(tmp_path):
    image = synthetic_state_dict("vicuna7b/image_qformer.pth", REDUCED["x-instructblip-7b"])
    both = {**image, "audio_query_tokens": torch.zeros(1, 4, 32)}
    with pytest.raises(ValueError, match=r"holds the interfaces of \['image', 'audio'\]"):
        convert_lavis_state_dict(both)
    conversion = convert_lavis_state_dict(both, "image", num_attention_heads=4)
    assert conversion.skipped["audio_query_tokens"].startswith("other-modality: part of the audio interface")


def test_lavis_13b_pc_config_leaves_the_layer_norm_at_its_initial_values(tmp_path):
    state = synthetic_state_dict("vicuna13b/pc_qformer.pth", REDUCED["x-instructblip-13b"])
    conversion = convert_lavis_state_dict(state, num_attention_heads=4, layer_norm="lavis_13b_pc_config")
    assert torch.equal(conversion.state_dict["encoder_layer_norm.weight"], torch.ones(24))
    assert torch.equal(conversion.state_dict["encoder_layer_norm.bias"], torch.zeros(24))
    assert conversion.skipped["pc_ln.weight"].startswith("lavis-13b-pc-config:")
    assert "encoder_layer_norm.weight" not in conversion.sources
    default = convert_lavis_state_dict(state, num_attention_heads=4)
    assert torch.equal(default.state_dict["encoder_layer_norm.weight"], state["pc_ln.weight"])


def test_the_3d_qformer_reads_one_projected_ulip_token(reduced_models):
    model, processor = reduced_models["x-instructblip-7b"]
    clouds = media_prompt(processor, "point_cloud")["point_clouds"]
    encoded = model.model.encode_media("point_cloud", clouds)
    assert encoded.features.shape == (1, 1, REDUCED["x-instructblip-7b"]["pc"])
    encoder = model.model.encoders["point_cloud"]
    tokens = encoder.final_norm(encoder(clouds, output_hidden_states=True).hidden_states[-2])
    pooled = torch.cat([tokens[:, 0], tokens[:, 1:].max(dim=1).values], dim=-1)  # ULIP point_encoder.py:223
    torch.testing.assert_close(
        encoded.features[:, 0], pooled @ encoder.projection.weight.T
    )  # ULIP_models.py:151


def test_lavis_linear_variant_computes_lavis_projection_only_path():
    torch.manual_seed(0)
    sizes = dict(
        num_query_tokens=3, hidden_size=8, num_attention_heads=1, encoder_hidden_size=6, output_hidden_size=5
    )
    interface = LinearInterface(XLLMInterfaceConfig(kind="linear", linear_variant="lavis", **sizes)).eval()
    features = torch.randn(2, 7, 6)
    # blip2_vicuna_xinstruct.py:581, 637, 707: llm_proj(projection(ln(x).mean(1, keepdim=True)).reshape(bs, Q, -1))
    embeds = interface.encoder_layer_norm(features)
    projected = interface.expand(embeds.mean(1, keepdim=True)).reshape(2, 3, -1)
    torch.testing.assert_close(interface(features), interface.adapter(projected))
    with_gelu = LinearInterface(XLLMInterfaceConfig(kind="linear", linear_variant="gelu_between", **sizes))
    with_gelu.load_state_dict(interface.state_dict())
    assert not torch.allclose(with_gelu(features), interface(features))


def test_ulip2_checkpoint_with_pc_projection_converts_into_the_single_token_encoder(tmp_path):
    from test_pointbert import ulip_point_encoder_state_dict

    from xllm.modeling_xllm.convert_pointbert import convert_pointbert_checkpoint
    from xllm.modeling_xllm.modeling_pointbert import XLLMPointBertModel

    encoder = ulip_point_encoder_state_dict(in_channels=3, width=32, depth=2)
    encoder = {key: t.abs() if key.endswith("running_var") else t for key, t in encoder.items()}
    projection = torch.randn(2 * 32, 24)  # ULIP_models.py:103: (pc_feat_dims, embed_dim), used as x @ P
    state_dict = {f"module.point_encoder.{key}": tensor for key, tensor in encoder.items()}
    torch.save({"state_dict": {**state_dict, "module.pc_projection": projection}}, tmp_path / "ulip2.pt")

    kwargs = dict(num_attention_heads=2, num_groups=16, group_size=8)
    config, converted = convert_pointbert_checkpoint(tmp_path / "ulip2.pt", output="ulip_embedding", **kwargs)
    assert (config.output, config.projection_size, config.xllm_output_size) == ("ulip_embedding", 24, 24)
    model = XLLMPointBertModel(config).eval()
    result = model.load_state_dict(converted, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    tokens_config, tokens_state = convert_pointbert_checkpoint(tmp_path / "ulip2.pt", **kwargs)
    all_tokens = XLLMPointBertModel(tokens_config).eval()
    all_tokens.load_state_dict(tokens_state, strict=True)

    cloud = torch.rand(2, 40, 3)
    tokens = all_tokens(cloud).last_hidden_state  # (2, 17, 32), final-normed
    expected = torch.cat([tokens[:, 0], tokens[:, 1:].max(dim=1).values], dim=-1) @ projection  # encode_pc
    torch.testing.assert_close(model(cloud).last_hidden_state, expected.unsqueeze(1))
    torch.save({"state_dict": state_dict}, tmp_path / "no_projection.pt")
    with pytest.raises(ValueError, match="needs ULIP's 'pc_projection'"):
        convert_pointbert_checkpoint(tmp_path / "no_projection.pt", output="ulip_embedding", **kwargs)


@pytest.mark.parametrize("preset", ["x-instructblip-7b", "x-instructblip-7b-linear"])
def test_preset_shaped_model_saves_and_reloads_its_3d_path_and_linear_layout(
    preset, reduced_models, tmp_path
):
    model, processor = reduced_models[preset]
    model.save_pretrained(tmp_path)
    reloaded = XLLMForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert reloaded.config.point_cloud_config.output == "ulip_embedding"
    assert (
        reloaded.config.point_cloud_interface_config.linear_variant
        == model.config.point_cloud_interface_config.linear_variant
    )
    inputs = media_prompt(processor, "point_cloud")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, model(**inputs).logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize("output", ["ulip_embedding", "all_tokens"])
def test_a_model_built_from_parts_takes_the_3d_path_of_its_point_encoder(output, tmp_path):
    from transformers import AutoModelForCausalLM

    from xllm.modeling_xllm.modeling_pointbert import XLLMPointBertModel
    from xllm.testing import tiny_interface_config, tiny_text_config

    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    AutoModelForCausalLM.from_config(tiny_text_config("llama", vocab_size=len(tokenizer))).save_pretrained(
        tmp_path / "llm"
    )
    XLLMPointBertModel(tiny_point_cloud_config(output=output, projection_size=24)).save_pretrained(
        tmp_path / "pc"
    )
    model = XLLMForConditionalGeneration.from_pretrained_parts(
        tmp_path / "llm",
        {"point_cloud": tmp_path / "pc"},
        {"point_cloud": tiny_interface_config()},
        tokenizer=tokenizer,
    ).eval()
    width, tokens = (24, 1) if output == "ulip_embedding" else (32, 17)
    assert model.config.point_cloud_interface_config.encoder_hidden_size == width
    clouds = torch.rand(1, 100, 3)
    assert model.model.encode_media("point_cloud", clouds).features.shape == (1, tokens, width)
    processor = tiny_processor(modalities=("point_cloud",))
    generated = model.generate(**media_prompt(processor, "point_cloud"), max_new_tokens=2, do_sample=False)
    assert generated.shape[0] == 1


def test_cli_converts_a_runner_checkpoint_without_naming_its_modality(reduced_models, tmp_path):
    from test_conversion import run_cli
    from transformers import AutoModelForMultimodalLM

    model, processor = reduced_models["x-instructblip-13b"]
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    state = synthetic_state_dict("vicuna13b/pc_qformer.pth", REDUCED["x-instructblip-13b"])
    save_file(tmp_path / "pc_qformer.pth", state, "runner")
    arguments = [str(tmp_path / "pc_qformer.pth"), str(tmp_path / "out"), "--model", str(tmp_path / "model")]
    assert run_cli("convert", "lavis", *arguments, "--layer-norm", "lavis_13b_pc_config") == 0
    loaded = AutoModelForMultimodalLM.from_pretrained(tmp_path / "out").model.interfaces["point_cloud"]
    torch.testing.assert_close(loaded.query_tokens.data, state["pc_query_tokens"])
    assert torch.equal(loaded.encoder_layer_norm.weight.data, torch.ones(24))
