"""Shared fixtures: one tiny random-weight model and processor per session, saved once to disk."""

import numpy as np
import pytest
from PIL import Image

from xllm.testing import tiny_model_and_processor

# Markers transformers' own conftest registers, used by the common tests `tests/conformance/` runs from its sdist
# (registered here: a second `conftest.py` under tests/ would shadow this module for `from conftest import ...`).
TRANSFORMERS_MARKERS = (
    "flash_attn_test",
    "flash_attn_3_test",
    "flash_attn_4_test",
    "torch_compile_test",
    "torch_export_test",
    "generate",
    "is_training_test",
    "bitsandbytes",
    "accelerate_tests",
)


def pytest_configure(config):
    for marker in TRANSFORMERS_MARKERS:
        config.addinivalue_line("markers", f"{marker}: a marker of transformers' own test suite")


def random_image(seed: int, size: int = 32) -> Image.Image:
    """A reproducible RGB noise image."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def random_video(num_frames: int, seed: int = 0, size: int = 32) -> np.ndarray:
    """A reproducible video array of shape (frames, height, width, 3)."""
    return np.random.default_rng(seed).integers(0, 256, (num_frames, size, size, 3), dtype=np.uint8)


@pytest.fixture(scope="session")
def tiny():
    """(model, processor): Llama LLM, CLIP vision encoder, instruction-aware image and video Q-Formers."""
    return tiny_model_and_processor()


@pytest.fixture(scope="session")
def tiny_model(tiny):
    return tiny[0]


@pytest.fixture(scope="session")
def tiny_processor(tiny):
    return tiny[1]


@pytest.fixture(scope="session")
def saved_tiny_dir(tiny, tmp_path_factory):
    """The tiny model and processor saved together (safetensors), as a user's checkpoint folder."""
    model, processor = tiny
    directory = tmp_path_factory.mktemp("tiny_xllm")
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


@pytest.fixture
def image() -> Image.Image:
    return random_image(seed=0)


@pytest.fixture(scope="session")
def world_data(tmp_path_factory):
    """A small synthetic world exported as manifests of the training format (`xllm world export`):
    4 train and 2 test items per modality, 2 cross-modal test pairs per pair type."""
    from xllm.cli import main

    folder = tmp_path_factory.mktemp("world_data")
    assert main(["world", "export", str(folder), "--train", "4", "--test", "2", "--discrn-pairs", "2"]) == 0
    return folder
