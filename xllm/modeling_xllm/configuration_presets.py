"""`XLLMConfig` presets for the published systems (X-LLM, X-InstructBLIP 7b / 13b) and a tiny one.

Presets build configurations only: no weights are downloaded. With random weights (or on the meta
device) they give the published architectures and trainable-parameter counts; converted checkpoints
fill the weights.

Placeholder tokens are appended after the LLM's own vocabulary, one per row of the modality table and
in its order, which is the order in which `XLLMProcessor` adds them to a tokenizer that lacks them
(its own table has the same rows in the same order: tests/test_modality_tables.py checks both, and
that a processor built over such a tokenizer gives the preset's ids). So `text_config.vocab_size` is
the LLM's vocabulary plus one per modality and the token ids follow from the LLM's vocabulary size.
"""

from transformers import Blip2VisionConfig, GlmConfig, LlamaConfig, ParakeetEncoderConfig

from .configuration_beats import XLLMBeatsConfig
from .configuration_pointbert import XLLMPointBertConfig
from .configuration_xllm import XLLMConfig, XLLMInterfaceConfig
from .model_modalities import MODALITIES, default_modality_cues, token_id_key

# X-LLM's frame sampling (5 frames) is also X-InstructBLIP's.
NUM_VIDEO_FRAMES = 5

# Vicuna (Llama) sizes: hidden, layers, heads, FFN; vocabulary 32000.
VICUNA_SIZES = {"7b": (4096, 32, 32, 11008), "13b": (5120, 40, 40, 13824)}
VICUNA_VOCAB_SIZE = 32000

# ChatGLM-6B's vocabulary (icetk tokens) and special token ids; the GLM config below stands in for its
# architecture.
CHATGLM_6B_VOCAB_SIZE = 130528
CHATGLM_6B_SPECIAL_TOKEN_IDS = dict(pad_token_id=3, bos_token_id=130004, eos_token_id=130005)


def placeholder_token_ids(llm_vocab_size: int) -> dict[str, int]:
    """`{modality}_token_id` of every placeholder, appended in table order after an LLM vocabulary of this size."""
    return {token_id_key(modality): llm_vocab_size + index for index, modality in enumerate(MODALITIES)}


def eva_vit_g_config() -> Blip2VisionConfig:
    """EVA ViT-g/14 as BLIP-2 uses it: 1408 wide, 39 layers (the 40th is dropped), 224 px, patch 14."""
    return Blip2VisionConfig(
        hidden_size=1408,
        num_hidden_layers=39,
        num_attention_heads=16,
        intermediate_size=6144,
        image_size=224,
        patch_size=14,
        qkv_bias=True,
        layer_norm_eps=1e-6,
    )


def conformer_speech_config() -> ParakeetEncoderConfig:
    """The X-LLM speech encoder: conv subsampling + conformer over 80-bin Kaldi fbank.

    X-LLM used an in-house Mandarin ASR conformer whose sizes were not published; these are the
    common ESPnet / WeNet "Conformer" recipe sizes for AISHELL-scale Mandarin ASR (12 blocks,
    width 256, 4 heads, FFN 2048, convolution kernel 15, 4x subsampling to 40 ms frames). 4x
    subsampling keeps the frame rate CIF integrates over close to the published one (about 3 to 5
    frames per Chinese character).
    """
    return ParakeetEncoderConfig(
        hidden_size=256,
        num_hidden_layers=12,
        num_attention_heads=4,
        num_key_value_heads=4,
        intermediate_size=2048,
        conv_kernel_size=15,
        subsampling_factor=4,
        subsampling_conv_channels=256,
        num_mel_bins=80,
    )


def chatglm_6b_text_config() -> GlmConfig:
    """A transformers GLM config at ChatGLM-6B's size: 4096 wide, 28 layers, 32 heads, 2048 positions.
    ChatGLM-6B's own remote code does not run on current transformers.

    ChatGLM-6B's FFN is 16384 wide with two matrices (GELU); GLM's is gated (three matrices), so the
    width with the same parameters is 16384 * 2 / 3, rounded to 10944 (a multiple of 64): the LLM
    then has ChatGLM-6B's 6.2B parameters (layers and embeddings).
    """
    return GlmConfig(
        hidden_size=4096,
        num_hidden_layers=28,
        num_attention_heads=32,
        num_key_value_heads=32,
        head_dim=128,
        intermediate_size=10944,
        max_position_embeddings=2048,
        vocab_size=CHATGLM_6B_VOCAB_SIZE + len(MODALITIES),
        **CHATGLM_6B_SPECIAL_TOKEN_IDS,
    )


def vicuna_text_config(size: str) -> LlamaConfig:
    if size not in VICUNA_SIZES:
        raise ValueError(f"`size` must be one of {sorted(VICUNA_SIZES)}, got {size!r}.")
    hidden, layers, heads, ffn = VICUNA_SIZES[size]
    return LlamaConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=ffn,
        max_position_embeddings=2048,
        vocab_size=VICUNA_VOCAB_SIZE + len(MODALITIES),
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )


def qformer_config(instruction_aware: bool, **kwargs) -> XLLMInterfaceConfig:
    """BLIP-2's Q-Former: BERT-base (12 layers, 768 wide), 32 queries, cross-attention every 2nd layer."""
    return XLLMInterfaceConfig(
        kind="qformer",
        num_query_tokens=32,
        cross_attention_frequency=2,
        instruction_aware=instruction_aware,
        **kwargs,
    )


def x_llm_config() -> XLLMConfig:
    """X-LLM (Chen et al., 2023): EVA ViT-g image and video Q-Formers (not instruction-aware),
    a conformer speech encoder with a 12-layer, 768-wide C-Former, and a ChatGLM-6B-sized GLM."""
    text_config = chatglm_6b_text_config()
    return XLLMConfig(
        text_config=text_config,
        vision_config=eva_vit_g_config(),
        speech_config=conformer_speech_config(),
        image_interface_config=qformer_config(instruction_aware=False),
        video_interface_config=qformer_config(instruction_aware=False),
        speech_interface_config=XLLMInterfaceConfig(
            kind="cformer", num_hidden_layers=12, instruction_aware=False
        ),
        num_video_frames=NUM_VIDEO_FRAMES,
        **placeholder_token_ids(CHATGLM_6B_VOCAB_SIZE),
    )


# LAVIS' Q-Former tokenizer is BERT's 30522 tokens plus `[DEC]` (blip2.py `init_tokenizer`), and every
# X-InstructBLIP Q-Former has that many word embeddings (blip2_vicuna_xinstruct.py:2470, 359).
LAVIS_QFORMER_VOCAB_SIZE = 30523


def lavis_linear_config() -> XLLMInterfaceConfig:
    """LAVIS' linear ablation (`projection_only`, `proj_dim: 768`): pooled features -> 32 x 768 -> LLM width."""
    return XLLMInterfaceConfig(
        kind="linear", linear_variant="lavis", num_query_tokens=32, hidden_size=768, instruction_aware=False
    )


def x_instructblip_config(size: str = "7b", interface: str = "qformer") -> XLLMConfig:
    """X-InstructBLIP (Panagopoulou et al., 2023) with Vicuna-7b or -13b, in LAVIS' shapes (the released
    per-modality files load into it, `xllm convert lavis`): instruction-aware Q-Formers (32 queries x 768,
    vocabulary 30523) reading EVA ViT-g for image and video (1408 wide), BEATs for audio (768 wide, 5.12 s
    windows), and ULIP-2's PointBERT over 8192 xyz points ending in its `pc_projection` for 3D: the
    3D Q-Former reads ONE 512-wide token (`output="ulip_embedding"`). Each block is preceded by its cue.

    `interface="linear"` gives every modality LAVIS' linear ablation instead (`lavis_linear_config`)."""
    if interface not in ("qformer", "linear"):
        raise ValueError(f"`interface` must be 'qformer' or 'linear', got {interface!r}.")

    def interface_config() -> XLLMInterfaceConfig:
        if interface == "linear":
            return lavis_linear_config()
        return qformer_config(instruction_aware=True, vocab_size=LAVIS_QFORMER_VOCAB_SIZE)

    return XLLMConfig(
        text_config=vicuna_text_config(size),
        vision_config=eva_vit_g_config(),
        audio_config=XLLMBeatsConfig(),
        point_cloud_config=XLLMPointBertConfig(in_channels=3, output="ulip_embedding", projection_size=512),
        image_interface_config=interface_config(),
        video_interface_config=interface_config(),
        audio_interface_config=interface_config(),
        point_cloud_interface_config=interface_config(),
        num_video_frames=NUM_VIDEO_FRAMES,
        modality_cues=default_modality_cues(),
        **placeholder_token_ids(VICUNA_VOCAB_SIZE),
    )


def tiny_preset_config(llm_vocab_size: int = 64) -> XLLMConfig:
    """X-InstructBLIP's shape in miniature (every modality, widths 32, 2 layers) for tests and demos."""
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    interface = dict(small, num_query_tokens=4, cross_attention_frequency=1, max_position_embeddings=128)
    return XLLMConfig(
        text_config=LlamaConfig(
            **small, num_key_value_heads=2, vocab_size=llm_vocab_size + len(MODALITIES), pad_token_id=0
        ),
        vision_config=Blip2VisionConfig(**small, image_size=32, patch_size=8),
        speech_config=ParakeetEncoderConfig(
            **small,
            num_key_value_heads=4,
            subsampling_factor=4,
            subsampling_conv_channels=8,
            conv_kernel_size=3,
        ),
        audio_config=XLLMBeatsConfig(
            **small,
            patch_embedding_size=24,
            conv_pos_kernel_size=8,
            conv_pos_groups=4,
            num_buckets=16,
            max_distance=40,
        ),
        point_cloud_config=XLLMPointBertConfig(
            **small, num_groups=16, group_size=8, group_embedding_size=48, position_embedding_size=16
        ),
        image_interface_config=XLLMInterfaceConfig(**interface),
        video_interface_config=XLLMInterfaceConfig(**interface),
        speech_interface_config=XLLMInterfaceConfig(**dict(interface, num_query_tokens=1), kind="cformer"),
        audio_interface_config=XLLMInterfaceConfig(**interface),
        point_cloud_interface_config=XLLMInterfaceConfig(**interface),
        num_video_frames=2,
        modality_cues=default_modality_cues(),
        **placeholder_token_ids(llm_vocab_size),
    )


PRESETS = {
    "x-llm": x_llm_config,
    "x-instructblip-7b": lambda: x_instructblip_config("7b"),
    "x-instructblip-13b": lambda: x_instructblip_config("13b"),
    "x-instructblip-7b-linear": lambda: x_instructblip_config("7b", interface="linear"),
    "tiny": tiny_preset_config,
}


def preset_config(name: str) -> XLLMConfig:
    """The `XLLMConfig` of a published system by name: one of `PRESETS`."""
    if name not in PRESETS:
        raise ValueError(f"`name` must be one of {sorted(PRESETS)}, got {name!r}.")
    return PRESETS[name]()


__all__ = ["PRESETS", "preset_config", "tiny_preset_config", "x_instructblip_config", "x_llm_config"]
