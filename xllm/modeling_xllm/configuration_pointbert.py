"""Configuration of the PointBERT point-cloud encoder as used by ULIP-2 (Xue et al., 2023).

The defaults are the published ULIP-2 sizes: 8192 input points split into 512 groups of 32
neighbours, a PointNet token embedder (per-point MLPs 3-128-256, then 512-512-256), and a 12-layer
ViT of width 384 with 6 heads.

What the encoder hands on (`output`):
* `all_tokens` (default): every final-normed token, `(batch, 1 + num_groups, hidden_size)`;
* `ulip_embedding`: ULIP-2's point embedding, as LAVIS' X-InstructBLIP 3D path reads it: the final-normed
  CLS token and the max over the group tokens, concatenated (`2 * hidden_size`) and projected without bias
  to `projection_size` (ULIP's `pc_projection`, 512): ONE token, `(batch, 1, projection_size)`
  (LAVIS `ulip_models/pointbert/point_encoder.py:222-223`, `ULIP_models.py:149-152`).
"""

from transformers import PretrainedConfig

POINT_OUTPUTS = ("all_tokens", "ulip_embedding")


class XLLMPointBertConfig(PretrainedConfig):
    r"""
    in_channels (`int`, defaults to 3): 3 for xyz clouds, 6 for xyz + rgb.
    num_groups (`int`, defaults to 512): group centres chosen by farthest-point sampling.
    group_size (`int`, defaults to 32): nearest neighbours gathered around every centre.
    group_embedding_size (`int`, defaults to 256): width of the PointNet token embedder output.
    pointnet_width (`int`, defaults to 512): width of the PointNet's second per-point MLP; its first MLP
        outputs half of it (ULIP-2: 512, LAVIS `ulip_models/pointbert/dvae.py:177-192`). Narrower trains faster.
    position_embedding_size (`int`, defaults to 128): hidden width of the centre-position MLP.
    hidden_size, num_hidden_layers, num_attention_heads, intermediate_size: the ViT sizes.
    qkv_bias (`bool`, defaults to False): ULIP-2's blocks have no query/key/value bias.
    output (`str`, defaults to `"all_tokens"`): `all_tokens` or `ulip_embedding` (see the module docstring).
    projection_size (`int`, defaults to 512): width of ULIP's `pc_projection` (`ulip_embedding` only).

    Example:

    ```python
    >>> from xllm.modeling_xllm.configuration_pointbert import XLLMPointBertConfig
    >>> from xllm.modeling_xllm.modeling_pointbert import XLLMPointBertModel
    >>> model = XLLMPointBertModel(XLLMPointBertConfig(in_channels=6))
    >>> XLLMPointBertConfig(output="ulip_embedding").xllm_output_size
    512
    ```
    """

    model_type = "xllm_pointbert"

    in_channels: int = 3
    num_groups: int = 512
    group_size: int = 32
    group_embedding_size: int = 256
    pointnet_width: int = 512
    position_embedding_size: int = 128
    hidden_size: int = 384
    num_hidden_layers: int = 12
    num_attention_heads: int = 6
    intermediate_size: int = 1536
    hidden_act: str = "gelu"
    qkv_bias: bool = False
    attention_dropout: float = 0.0
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    output: str = "all_tokens"
    projection_size: int = 512

    @property
    def xllm_output_size(self) -> int:
        """Width of the tokens the encoder hands to an interface."""
        return self.projection_size if self.output == "ulip_embedding" else self.hidden_size

    def __post_init__(self, **kwargs):
        if self.output not in POINT_OUTPUTS:
            raise ValueError(f"output must be one of {POINT_OUTPUTS}, got {self.output!r}")
        if self.in_channels not in (3, 6):
            raise ValueError(f"in_channels must be 3 (xyz) or 6 (xyz + rgb), got {self.in_channels}")
        if self.pointnet_width < 2 or self.pointnet_width % 2 != 0:
            raise ValueError(
                f"pointnet_width must be an even number of at least 2, got {self.pointnet_width}"
            )
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by "
                f"num_attention_heads ({self.num_attention_heads})"
            )
        super().__post_init__(**kwargs)
