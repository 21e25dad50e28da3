"""Write a folder saved by an earlier version of the package, for tests/test_legacy_folder.py.

Run it with the code of the commit to preserve (a checkout of it first on the path):

    git worktree add /tmp/old <commit>
    PYTHONPATH=/tmp/old python scripts/write_legacy_fixture.py tests/fixtures/saved-by-<commit>

It saves the tiny model (every modality) and its processor as that version's `save_pretrained` writes
them, plus `reference.safetensors`: the processor's outputs for fixed inputs of every modality, the
logits the model gives for them and its greedy continuation. The inputs are rebuilt from seeds by the
test (`reference_media`), so it checks the processor and the model of today against that version.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

TEXTS = [
    "<image> what colour is it ? <point_cloud>",
    "<video> describe it <speech>",
    "<audio> which one",
]
GENERATED_TOKENS = 4


def reference_media() -> dict:
    """The fixed media of every modality, from seeds (the test calls this function too)."""
    rng = np.random.default_rng(0)
    time = np.arange(8000) / 16000
    return {
        "images": [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)],
        "videos": [rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)],
        "speech": [(0.3 * np.sin(2 * np.pi * 440 * time)).astype(np.float32)],
        "audio": [(0.3 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000)).astype(np.float32)],
        "point_clouds": [rng.normal(size=(80, 3)).astype(np.float32)],
    }


def main(output: str) -> None:
    from xllm.testing import tiny_model_and_processor

    output = Path(output)
    model, processor = tiny_model_and_processor()
    model.save_pretrained(output)
    processor.save_pretrained(output)
    inputs = processor(text=TEXTS, **reference_media())
    with torch.no_grad():
        logits = model(**inputs).logits
        generated = model.generate(
            **inputs, do_sample=False, max_new_tokens=GENERATED_TOKENS, min_new_tokens=GENERATED_TOKENS
        )
    tensors = {f"input.{name}": value.contiguous() for name, value in inputs.items()}
    tensors["logits"] = logits.contiguous()
    tensors["generated"] = generated[:, inputs["input_ids"].shape[1] :].contiguous()
    save_file(tensors, output / "reference.safetensors")
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        cwd=Path(sys.modules["xllm"].__file__).parent,
    )
    (output / "reference.json").write_text(
        json.dumps({"commit": commit.stdout.strip(), "texts": TEXTS}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main(sys.argv[1])
