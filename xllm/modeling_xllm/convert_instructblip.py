"""Convert transformers' BLIP-2 / InstructBLIP into an X-LLM model with one image interface.

X-LLM initialises its image Q-Former from BLIP-2, and X-InstructBLIP starts from InstructBLIP, so
this is how real checkpoints enter the package. The converted model computes what the original
computes: the vision encoder, the Q-Former and the LLM are the same modules with new names.

Their vision model applies `post_layernorm` to its last hidden state before the Q-Former reads
it; we read the encoder's last hidden state (`encoder_feature_layer=-1`, CLS kept) and the
interface applies that LayerNorm itself (`encoder_layer_norm`), as LAVIS' `ln_vision` does. The
encoder keeps its own copy of `post_layernorm` (unused by the interface) so it stays a complete
transformers vision model. The interface's LayerNorm takes the vision config's `layer_norm_eps`
(`encoder_layer_norm_eps`; 1e-6 in transformers' BLIP-2 configs, where LAVIS' `ln_vision` has
PyTorch's 1e-5), so the converted model computes the original's arithmetic.

Key mapping (transformers -> ours), `i` the Q-Former layer, `P` = `model.interfaces.image.`:

| transformers key                                        | XLLM key                                           |
| ------------------------------------------------------- | -------------------------------------------------- |
| `vision_model.*`                                        | `model.encoders.vision.*`                          |
| `vision_model.post_layernorm.*`                         | also `P encoder_layer_norm.*`                      |
| `query_tokens`                                          | `P query_tokens`                                   |
| `qformer.embeddings.{word,position}_embeddings.*`       | `P qformer.{word,position}_embeddings.*`           |
| `qformer.embeddings.layernorm.*` / `qformer.layernorm.*` | `P qformer.embedding_layer_norm.*`                |
| `qformer.encoder.layer.i.attention.attention.{query,key,value}.*` | `P qformer.layers.i.self_attention.{query,key,value}.*` |
| `qformer.encoder.layer.i.attention.output.dense.*`      | `P qformer.layers.i.self_attention.output.*`       |
| `qformer.encoder.layer.i.attention.output.LayerNorm.*`  | `P qformer.layers.i.self_attention.layer_norm.*`   |
| `qformer.encoder.layer.i.crossattention.*`              | `P qformer.layers.i.cross_attention.*` (as above)  |
| `qformer.encoder.layer.i.intermediate_query.dense.*`    | `P qformer.layers.i.query_feed_forward.intermediate.*` |
| `qformer.encoder.layer.i.output_query.{dense,LayerNorm}.*` | `P qformer.layers.i.query_feed_forward.{output,layer_norm}.*` |
| `qformer.encoder.layer.i.intermediate.dense.*`          | `P qformer.layers.i.text_feed_forward.intermediate.*` |
| `qformer.encoder.layer.i.output.{dense,LayerNorm}.*`    | `P qformer.layers.i.text_feed_forward.{output,layer_norm}.*` |
| `language_projection.*`                                 | `P adapter.*`                                      |
| `language_model.<base prefix>.*`                        | `model.language_model.*`                           |
| `language_model.lm_head.*`                              | `lm_head.*`                                        |

BLIP-2's Q-Former reads no text, so it has no word/position embeddings and no text feed-forward
blocks: the converted interface is not instruction-aware and those (unused) weights keep their
fresh initialisation. They are the only keys allowed to be missing.
"""

import copy
from pathlib import Path

import torch
from transformers import (
    Blip2Config,
    Blip2ForConditionalGeneration,
    Blip2Processor,
    InstructBlipConfig,
    InstructBlipForConditionalGeneration,
    InstructBlipProcessor,
    PreTrainedModel,
    ProcessorMixin,
)

from .configuration_xllm import XLLMConfig, XLLMInterfaceConfig
from .convert_pointbert import rename_keys
from .modeling_xllm import XLLMForConditionalGeneration

# Source kind -> its transformers model and processor classes.
BLIP_CLASSES = {
    "instructblip": (InstructBlipForConditionalGeneration, InstructBlipProcessor),
    "blip2": (Blip2ForConditionalGeneration, Blip2Processor),
}

INTERFACE = "model.interfaces.image."
QFORMER_LAYER = r"^qformer\.encoder\.layer\.(\d+)\."
ATTENTION_TO_XLLM = {"attention": "self_attention", "crossattention": "cross_attention"}
FEED_FORWARD_TO_XLLM = {"_query": "query_feed_forward", "": "text_feed_forward"}


def qformer_key_rules() -> list[tuple[str, str]]:
    """(pattern, replacement) rules from transformers' Q-Former names to ours."""
    layers = INTERFACE + r"qformer.layers.\1."
    rules = [
        (r"^query_tokens$", INTERFACE + "query_tokens"),
        (r"^qformer\.embeddings\.(word|position)_embeddings\.", INTERFACE + r"qformer.\1_embeddings."),
        (r"^qformer\.(embeddings\.)?layernorm\.", INTERFACE + "qformer.embedding_layer_norm."),
        (r"^language_projection\.", INTERFACE + "adapter."),
    ]
    for theirs, ours in ATTENTION_TO_XLLM.items():
        rules += [
            (QFORMER_LAYER + theirs + r"\.attention\.(query|key|value)\.", layers + ours + r".\2."),
            (QFORMER_LAYER + theirs + r"\.output\.dense\.", layers + ours + ".output."),
            (QFORMER_LAYER + theirs + r"\.output\.LayerNorm\.", layers + ours + ".layer_norm."),
        ]
    for suffix, ours in FEED_FORWARD_TO_XLLM.items():
        rules += [
            (QFORMER_LAYER + f"intermediate{suffix}" + r"\.dense\.", layers + ours + ".intermediate."),
            (QFORMER_LAYER + f"output{suffix}" + r"\.dense\.", layers + ours + ".output."),
            (QFORMER_LAYER + f"output{suffix}" + r"\.LayerNorm\.", layers + ours + ".layer_norm."),
        ]
    return rules


def blip_key_rules(language_model: PreTrainedModel) -> list[tuple[str, str]]:
    """All renaming rules; the LLM's base-model prefix (`model`, `transformer`, ...) is read off it."""
    base_prefix = language_model.base_model_prefix
    return qformer_key_rules() + [
        (r"^vision_model\.", "model.encoders.vision."),
        (rf"^language_model\.{base_prefix}\.", "model.language_model."),
        (r"^language_model\.lm_head\.", "lm_head."),
    ]


def convert_blip_state_dict(
    state_dict: dict[str, torch.Tensor], language_model: PreTrainedModel
) -> dict[str, torch.Tensor]:
    """Rename a BLIP-2 / InstructBLIP state dict to XLLM keys (tensors are shared, except the LayerNorm
    that both the encoder and the interface hold: safetensors refuses to save one tensor twice)."""
    converted = rename_keys(state_dict, blip_key_rules(language_model))
    for name in ("weight", "bias"):
        converted[f"{INTERFACE}encoder_layer_norm.{name}"] = state_dict[
            f"vision_model.post_layernorm.{name}"
        ].clone()
    return converted


def xllm_config_from_blip(config: Blip2Config | InstructBlipConfig) -> XLLMConfig:
    """An XLLMConfig with the same vision encoder, Q-Former sizes and LLM as the BLIP config."""
    if not isinstance(config, (Blip2Config, InstructBlipConfig)):
        raise ValueError(
            f"`config` must be a Blip2Config or an InstructBlipConfig, got {type(config).__name__}."
        )
    if not config.use_decoder_only_language_model:
        raise ValueError(
            f"`config.text_config` is a {config.text_config.model_type} encoder-decoder LLM; X-LLM connects to "
            "decoder-only (causal) LLMs only."
        )
    if config.image_token_id is None:
        raise ValueError(
            "`config.image_token_id` is None: this checkpoint predates the `<image>` placeholder token. Load it "
            "with a processor that adds the token, resize the LLM embeddings and set `image_token_id`."
        )
    qformer = config.qformer_config
    interface = XLLMInterfaceConfig(
        kind="qformer",
        num_query_tokens=config.num_query_tokens,
        hidden_size=qformer.hidden_size,
        num_hidden_layers=qformer.num_hidden_layers,
        num_attention_heads=qformer.num_attention_heads,
        intermediate_size=qformer.intermediate_size,
        hidden_act=qformer.hidden_act,
        hidden_dropout_prob=qformer.hidden_dropout_prob,
        attention_probs_dropout_prob=qformer.attention_probs_dropout_prob,
        layer_norm_eps=qformer.layer_norm_eps,
        initializer_range=qformer.initializer_range,
        cross_attention_frequency=qformer.cross_attention_frequency,
        instruction_aware=isinstance(config, InstructBlipConfig),
        vocab_size=qformer.vocab_size,
        max_position_embeddings=qformer.max_position_embeddings,
        pad_token_id=qformer.pad_token_id,
        encoder_feature_layer=-1,
        encoder_keep_cls=True,
        encoder_layer_norm_eps=config.vision_config.layer_norm_eps,
    )
    return XLLMConfig(
        text_config=config.text_config.to_dict(),
        vision_config=config.vision_config.to_dict(),
        image_interface_config=interface,
        image_token_id=config.image_token_id,
    )


def text_path_keys(config: XLLMConfig) -> set[str]:
    """Q-Former weights that only instruction tokens use (absent from BLIP-2 checkpoints)."""
    keys = {f"{INTERFACE}qformer.{name}_embeddings.weight" for name in ("word", "position")}
    for layer in range(config.image_interface_config.num_hidden_layers):
        for part in ("intermediate", "output", "layer_norm"):
            for name in ("weight", "bias"):
                keys.add(f"{INTERFACE}qformer.layers.{layer}.text_feed_forward.{part}.{name}")
    return keys


def convert_blip_model(original: PreTrainedModel) -> XLLMForConditionalGeneration:
    """An XLLMForConditionalGeneration computing what a Blip2/InstructBlipForConditionalGeneration computes.

    Weights are loaded through `from_pretrained(state_dict=...)`, so the model is built on the meta
    device and takes the original tensors without a second copy in memory.
    """
    config = xllm_config_from_blip(original.config)
    state_dict = convert_blip_state_dict(original.state_dict(), original.language_model)
    model, loading_info = XLLMForConditionalGeneration.from_pretrained(
        None, config=config, state_dict=state_dict, dtype=original.dtype, output_loading_info=True
    )
    allowed_missing = set() if config.image_interface_config.instruction_aware else text_path_keys(config)
    unexpected_missing = set(loading_info["missing_keys"]) - allowed_missing
    if unexpected_missing or loading_info["unexpected_keys"] or loading_info["mismatched_keys"]:
        raise ValueError(
            f"Converted weights do not fit the XLLM model: missing {sorted(unexpected_missing)}, unexpected "
            f"{sorted(loading_info['unexpected_keys'])}, mismatched {sorted(loading_info['mismatched_keys'])}."
        )
    return model.eval()


def convert_blip_processor(processor: ProcessorMixin, config: XLLMConfig):
    """An XLLMProcessor reusing a Blip2Processor's / InstructBlipProcessor's image processor and tokenizers.

    Frames of videos get the image processor's size and normalisation. BLIP-2 has no Q-Former
    tokenizer because its Q-Former reads no text; a copy of the LLM tokenizer stands in (one object
    in two roles breaks `save_pretrained`), and the converted interface, which is not
    instruction-aware, ignores what it produces.
    """
    from xllm.processing import (  # converters run where the package is installed
        XLLMProcessor,
        XLLMVideoProcessor,
    )

    image_token_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    if image_token_id != config.image_token_id:
        raise ValueError(
            f"The processor's tokenizer maps '<image>' to {image_token_id} but the model's `image_token_id` is "
            f"{config.image_token_id}; the processor does not belong to this checkpoint."
        )
    image_processor = processor.image_processor
    video_processor = XLLMVideoProcessor(
        size=dict(image_processor.size),
        image_mean=image_processor.image_mean,
        image_std=image_processor.image_std,
        num_frames=config.num_video_frames,
    )
    return XLLMProcessor(
        image_processor=image_processor,
        video_processor=video_processor,
        tokenizer=processor.tokenizer,
        qformer_tokenizer=getattr(processor, "qformer_tokenizer", None) or copy.deepcopy(processor.tokenizer),
        num_query_tokens={"image": config.image_interface_config.num_query_tokens},
    )


def convert_blip_checkpoint(kind: str, source: str, output: str | Path, dtype: str = "auto") -> Path:
    """A transformers BLIP-2 / InstructBLIP checkpoint (Hub id or folder) as an X-LLM folder with remote
    code and a model card (`xllm convert blip2|instructblip`)."""
    from xllm.hub import save_for_hub

    if kind not in BLIP_CLASSES:
        raise ValueError(f"`kind` must be one of {sorted(BLIP_CLASSES)}, got {kind!r}.")
    model_class, processor_class = BLIP_CLASSES[kind]
    model = convert_blip_model(model_class.from_pretrained(source, dtype=dtype))
    processor = convert_blip_processor(processor_class.from_pretrained(source), model.config)
    base_models = None if Path(source).exists() else [source]
    return save_for_hub(model, processor, output, base_models=base_models)


__all__ = [
    "BLIP_CLASSES",
    "convert_blip_checkpoint",
    "convert_blip_model",
    "convert_blip_processor",
    "convert_blip_state_dict",
    "xllm_config_from_blip",
]
