"""Tiny random-weight X-LLM models and processors for tests, benchmarks and users' own tests.

Everything is built in code (no download): a word-level LLM tokenizer, a small WordPiece
Q-Former tokenizer, tiny encoder / interface / LLM configs.
"""

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import (
    ASTFeatureExtractor,
    AutoConfig,
    BertTokenizer,
    BlipImageProcessor,
    FeatureExtractionMixin,
    PreTrainedConfig,
    PreTrainedTokenizerFast,
    WhisperFeatureExtractor,
)

from .modeling_xllm import XLLMConfig, XLLMForConditionalGeneration, XLLMInterfaceConfig
from .modeling_xllm.configuration_beats import XLLMBeatsConfig
from .modeling_xllm.configuration_pointbert import XLLMPointBertConfig
from .processing import (
    XLLMAudioFeatureExtractor,
    XLLMPointCloudFeatureExtractor,
    XLLMProcessor,
    XLLMVideoProcessor,
)

TINY_WORDS = (
    "question answer describe the image video what colour shape size is it a an of in on and which one "
    "red green blue yellow white black circle square triangle star small large left right top bottom "
    "centre moving up down slow fast first second two there how many this that see you do Question Answer "
    "audio 3d speech sound hear"
).split()  # "Question" / "Answer": the chat template's prompt words (the LLM tokenizer is case-sensitive)
SPECIAL_TOKENS = [
    "<pad>",
    "<s>",
    "</s>",
    "<unk>",
    "<image>",
    "<video>",
    "<speech>",
    "<audio>",
    "<point_cloud>",
]
PUNCTUATION = [":", "?", ".", ","]

TINY_TEXT_CONFIGS = {
    "llama": dict(model_type="llama", num_key_value_heads=2),
    "qwen2": dict(model_type="qwen2", num_key_value_heads=2),
    "opt": dict(model_type="opt", ffn_dim=64, word_embed_proj_dim=32, max_position_embeddings=128),
}
TINY_VISION_CONFIGS = {
    "clip_vision_model": dict(model_type="clip_vision_model", image_size=32, patch_size=8),
    "siglip_vision_model": dict(model_type="siglip_vision_model", image_size=32, patch_size=8),
    "blip_2_vision_model": dict(model_type="blip_2_vision_model", image_size=32, patch_size=8),
}


def word_level_tokenizer(
    words: list[str], lowercase: bool = False, model_max_length: int = 512
) -> PreTrainedTokenizerFast:
    """A word-level LLM tokenizer: the special and placeholder tokens, then `words` in order (ids
    are stable), split on whitespace and punctuation, optionally lower-cased."""
    vocab = {token: index for index, token in enumerate(dict.fromkeys(SPECIAL_TOKENS + list(words)))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    if lowercase:
        backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens=SPECIAL_TOKENS[4:],
        model_max_length=model_max_length,
    )


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level LLM tokenizer over a few dozen words, with the placeholder tokens."""
    return word_level_tokenizer(PUNCTUATION + TINY_WORDS)


def tiny_qformer_tokenizer() -> BertTokenizer:
    """A lower-casing WordPiece tokenizer (BERT conventions) over the same words."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + PUNCTUATION + TINY_WORDS
    return BertTokenizer(vocab={token: index for index, token in enumerate(vocab)}, model_max_length=128)


def tiny_text_config(model_type: str = "llama", vocab_size: int = 64) -> PreTrainedConfig:
    kwargs = dict(TINY_TEXT_CONFIGS[model_type])
    return AutoConfig.for_model(
        kwargs.pop("model_type"),
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        **kwargs,
    )


def tiny_vision_config(model_type: str = "clip_vision_model") -> PreTrainedConfig:
    kwargs = dict(TINY_VISION_CONFIGS[model_type])
    return AutoConfig.for_model(
        kwargs.pop("model_type"),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        **kwargs,
    )


def tiny_interface_config(
    num_query_tokens: int = 4, instruction_aware: bool = True, **kwargs
) -> XLLMInterfaceConfig:
    defaults = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        cross_attention_frequency=1,
        vocab_size=len(tiny_qformer_tokenizer()),
        max_position_embeddings=128,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    defaults.update(kwargs)
    return XLLMInterfaceConfig(
        num_query_tokens=num_query_tokens, instruction_aware=instruction_aware, **defaults
    )


def tiny_whisper_config(max_source_positions: int) -> PreTrainedConfig:
    """A 2-layer, 32-wide Whisper on 80 mel bins; its encoder reads `2 * max_source_positions` frames."""
    return AutoConfig.for_model(
        "whisper",
        d_model=32,
        encoder_layers=2,
        encoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_layers=1,
        decoder_attention_heads=4,
        decoder_ffn_dim=64,
        num_mel_bins=80,
        max_source_positions=max_source_positions,
    )


def tiny_speech_config(model_type: str = "parakeet_encoder") -> PreTrainedConfig:
    """A 2-layer speech encoder: Parakeet (conv subsampling + conformer, on 80-bin fbank) by default."""
    if model_type == "parakeet_encoder":
        return AutoConfig.for_model(
            "parakeet_encoder",
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            intermediate_size=64,
            subsampling_factor=4,
            subsampling_conv_channels=8,
            conv_kernel_size=3,
            dropout=0.0,
            layerdrop=0.0,
            activation_dropout=0.0,
            attention_dropout=0.0,
        )
    if model_type == "whisper":
        return tiny_whisper_config(max_source_positions=1500)  # 30 s of log-mel, as Whisper reads speech
    if model_type == "wav2vec2-conformer":
        return AutoConfig.for_model(
            "wav2vec2-conformer",
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            conv_dim=(16, 16),
            conv_stride=(10, 8),
            conv_kernel=(10, 8),
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=4,
            do_stable_layer_norm=True,
            feat_extract_norm="layer",
        )
    raise ValueError(f"No tiny speech config for {model_type!r}.")


# Tiny audio encoders and their feature extractors: BEATs windows itself (0.64 s windows here); AST
# (64 frames = 0.64 s) and Whisper (1 s chunks) read one window each, cut by the processor.
TINY_AUDIO_ENCODERS = ("xllm_beats", "audio-spectrogram-transformer", "whisper")
TINY_POINTS = 64


def tiny_audio_config(model_type: str = "xllm_beats") -> PreTrainedConfig:
    """A 2-layer, 32-wide audio encoder: BEATs (default), AST or the Whisper encoder."""
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    if model_type == "xllm_beats":
        return XLLMBeatsConfig(
            **small,
            patch_embedding_size=24,
            conv_pos_kernel_size=8,
            conv_pos_groups=4,
            num_buckets=16,
            max_distance=40,
        )
    if model_type == "audio-spectrogram-transformer":
        return AutoConfig.for_model(model_type, **small, num_mel_bins=16, max_length=64)
    if model_type == "whisper":
        return tiny_whisper_config(max_source_positions=50)  # 100 log-mel frames: 1 s chunks
    raise ValueError(f"`model_type` must be one of {TINY_AUDIO_ENCODERS}, got {model_type!r}.")


def tiny_audio_feature_extractor(model_type: str = "xllm_beats") -> FeatureExtractionMixin:
    """The feature extractor matching `tiny_audio_config(model_type)`."""
    if model_type == "xllm_beats":
        return XLLMAudioFeatureExtractor(window_seconds=0.64)
    if model_type == "audio-spectrogram-transformer":
        return ASTFeatureExtractor(num_mel_bins=16, max_length=64)
    if model_type == "whisper":
        return WhisperFeatureExtractor(feature_size=80, chunk_length=1)
    raise ValueError(f"`model_type` must be one of {TINY_AUDIO_ENCODERS}, got {model_type!r}.")


def tiny_point_cloud_config(**overrides) -> XLLMPointBertConfig:
    """A 2-layer PointBERT over 16 groups of 8 points."""
    sizes = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_groups=16,
        group_size=8,
        group_embedding_size=48,
        position_embedding_size=16,
    )
    return XLLMPointBertConfig(**{**sizes, **overrides})


def tiny_cformer_config(**kwargs) -> XLLMInterfaceConfig:
    kwargs.setdefault("max_position_embeddings", 512)
    return tiny_interface_config(num_query_tokens=1, instruction_aware=False, kind="cformer", **kwargs)


def tiny_processor(
    num_query_tokens: int = 4,
    image_size: int = 32,
    num_frames: int = 4,
    modalities: tuple[str, ...] = ("image", "video"),
    modality_cues: dict[str, str] | None = None,
    audio_model_type: str = "xllm_beats",
) -> XLLMProcessor:
    """The processor of the tiny model; `modalities` are the model's (`config.modalities`)."""
    size = {"height": image_size, "width": image_size}
    return XLLMProcessor(
        image_processor=BlipImageProcessor(size=size),
        video_processor=XLLMVideoProcessor(size=size, num_frames=num_frames),
        tokenizer=tiny_tokenizer(),
        qformer_tokenizer=tiny_qformer_tokenizer(),
        audio_feature_extractor=tiny_audio_feature_extractor(audio_model_type),
        point_cloud_feature_extractor=XLLMPointCloudFeatureExtractor(num_points=TINY_POINTS, in_channels=3),
        num_query_tokens={m: num_query_tokens for m in modalities if m != "speech"},
        modalities=list(modalities),
        modality_cues=modality_cues,
    )


def tiny_config(
    text_model_type: str = "llama",
    vision_model_type: str = "clip_vision_model",
    num_query_tokens: int = 4,
    instruction_aware: bool = True,
    num_video_frames: int = 4,
    speech_model_type: str | None = "parakeet_encoder",
    audio_model_type: str | None = "xllm_beats",
    point_clouds: bool = True,
    interface_kind: str = "qformer",
    modality_cues: dict[str, str] | None = None,
) -> XLLMConfig:
    """Tiny config: image and video interfaces, plus speech, audio and point-cloud ones unless turned
    off (`speech_model_type=None`, `audio_model_type=None`, `point_clouds=False`). `interface_kind`
    ("qformer" or "linear") applies to every fixed-length interface."""
    tokenizer = tiny_tokenizer()

    def interface() -> XLLMInterfaceConfig:
        return tiny_interface_config(num_query_tokens, instruction_aware, kind=interface_kind)

    modalities = {}
    if speech_model_type is not None:
        modalities.update(
            speech_config=tiny_speech_config(speech_model_type),
            speech_interface_config=tiny_cformer_config(),
            speech_token_id=tokenizer.convert_tokens_to_ids("<speech>"),
        )
    if audio_model_type is not None:
        modalities.update(
            audio_config=tiny_audio_config(audio_model_type),
            audio_interface_config=interface(),
            audio_token_id=tokenizer.convert_tokens_to_ids("<audio>"),
        )
    if point_clouds:
        modalities.update(
            point_cloud_config=tiny_point_cloud_config(),
            point_cloud_interface_config=interface(),
            point_cloud_token_id=tokenizer.convert_tokens_to_ids("<point_cloud>"),
        )
    return XLLMConfig(
        text_config=tiny_text_config(text_model_type, vocab_size=len(tokenizer)),
        vision_config=tiny_vision_config(vision_model_type),
        image_interface_config=interface(),
        video_interface_config=interface(),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<video>"),
        num_video_frames=num_video_frames,
        modality_cues=modality_cues,
        **modalities,
    )


def tiny_model_and_processor(
    text_model_type: str = "llama",
    vision_model_type: str = "clip_vision_model",
    seed: int = 0,
    **config_kwargs,
) -> tuple[XLLMForConditionalGeneration, XLLMProcessor]:
    """A small random-weight (model, processor) pair: image, video, speech, audio and point-cloud
    interfaces (see `tiny_config`, which takes `config_kwargs`), 2-layer LLM.

    Forward and generate take well under a second on a CPU. Encoders and LLM are frozen, as in
    training; the model is in eval mode.
    """
    torch.manual_seed(seed)
    config = tiny_config(text_model_type, vision_model_type, **config_kwargs)
    model = XLLMForConditionalGeneration(config).eval()
    processor = tiny_processor(
        config.image_interface_config.num_query_tokens,
        image_size=config.vision_config.image_size,
        num_frames=config.num_video_frames,
        modalities=config.modalities,
        modality_cues=config.modality_cues,
        audio_model_type=getattr(config.audio_config, "model_type", "xllm_beats"),
    )
    return model, processor
