"""A small synthetic multimodal world (images, videos, speech, sounds, point clouds) for the demo.

Deterministic given a seed; held-out attribute combinations make the test split measure
generalisation; a DisCRn-style cross-modal test set pairs items of two modalities.
"""

from .build import WorldSizes, build_world, load_world
from .discrn import SHARED_ATTRIBUTES, build_discrn_test_sets, text_comparisons
from .vocabulary import ATTRIBUTES, caption, comparison_prompt, world_vocabulary

__all__ = [
    "ATTRIBUTES",
    "SHARED_ATTRIBUTES",
    "WorldSizes",
    "build_discrn_test_sets",
    "build_world",
    "caption",
    "comparison_prompt",
    "load_world",
    "text_comparisons",
    "world_vocabulary",
]
