"""Configuration of the BEATs audio encoder (Chen et al., 2022, arXiv 2212.09058).

The defaults are BEATs_iter3's published sizes: 16x16 patches of a 128-bin Kaldi fbank embedded
at width 512, projected to a 12-layer, 768-wide post-norm transformer (12 heads, FFN 3072) with
DeepNorm residual scaling, a convolutional position embedding and a gated relative position bias.
"""

from transformers import PretrainedConfig


class XLLMBeatsConfig(PretrainedConfig):
    r"""
    num_mel_bins (`int`, defaults to 128): fbank bins of the input.
    patch_size (`int`, defaults to 16): side of the square time x frequency patches.
    patch_embedding_size (`int`, defaults to 512): width of the patch embedding (before projection).
    conv_bias (`bool`, defaults to False): whether the patch embedding convolution has a bias.
    hidden_size, num_hidden_layers, num_attention_heads, intermediate_size, hidden_act: transformer sizes.
    deep_norm (`bool`, defaults to True): scale residuals by (2 * layers) ** 0.25 (DeepNorm).
    conv_pos_kernel_size, conv_pos_groups: the convolutional position embedding (128, 16).
    num_buckets, max_distance: the relative position buckets (320, 800).
    fbank_mean, fbank_std: the published normalisation, applied by the feature extractor as
        (fbank - mean) / (2 * std); kept here so the extractor can read it from the model config.

    Example:

    ```python
    >>> from xllm.modeling_xllm.configuration_beats import XLLMBeatsConfig
    >>> from xllm.modeling_xllm.modeling_beats import XLLMBeatsModel
    >>> model = XLLMBeatsModel(XLLMBeatsConfig())  # BEATs_iter3-sized, random weights
    ```
    """

    model_type = "xllm_beats"

    num_mel_bins: int = 128
    patch_size: int = 16
    patch_embedding_size: int = 512
    conv_bias: bool = False
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    deep_norm: bool = True
    conv_pos_kernel_size: int = 128
    conv_pos_groups: int = 16
    num_buckets: int = 320
    max_distance: int = 800
    dropout: float = 0.0
    attention_dropout: float = 0.0
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    fbank_mean: float = 15.41663
    fbank_std: float = 6.55582

    def __post_init__(self, **kwargs):
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by "
                f"num_attention_heads ({self.num_attention_heads})"
            )
        if self.num_mel_bins % self.patch_size != 0:
            raise ValueError(
                f"num_mel_bins ({self.num_mel_bins}) must be a multiple of patch_size ({self.patch_size})"
            )
        super().__post_init__(**kwargs)
