"""A saved X-LLM folder loads with `trust_remote_code=True` in a process where `xllm` cannot be imported."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch

from xllm.hub import save_for_hub
from xllm.testing import tiny_model_and_processor

# Run in a fresh interpreter (-I: no PYTHONPATH, no user site, no script folder on sys.path) whose
# import system refuses `xllm`, which the virtualenv would otherwise find (it is installed).
LOAD_WITHOUT_XLLM = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class RefuseXLLM(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "xllm" or name.startswith("xllm."):
                raise ModuleNotFoundError(f"No module named {name!r}")

    sys.meta_path.insert(0, RefuseXLLM())
    import numpy as np
    import torch
    from transformers import AutoModelForMultimodalLM, AutoProcessor

    folder = sys.argv[1]
    model = AutoModelForMultimodalLM.from_pretrained(folder, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    image = np.full((32, 32, 3), 200, dtype=np.uint8)
    inputs = processor(images=[image], text="<image> what colour is it ?")
    with torch.no_grad():
        logits = model(**inputs).logits
    torch.save(logits, sys.argv[2])
    print(json.dumps({
        "model_module": type(model).__module__,
        "processor_module": type(processor).__module__,
        "xllm_imported": any(name.split(".")[0] == "xllm" for name in sys.modules),
    }))
    """
)


def load_without_xllm(folder: Path, scratch: Path) -> tuple[dict, torch.Tensor]:
    """Load `folder` with `trust_remote_code=True` in a fresh interpreter that cannot import `xllm`: what it
    loaded (`LOAD_WITHOUT_XLLM`'s report) and its logits for one image and a question."""
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(scratch / "modules")}
    environment.pop("PYTHONPATH", None)
    result = subprocess.run(
        [sys.executable, "-I", "-c", LOAD_WITHOUT_XLLM, str(folder), str(scratch / "logits.pt")],
        cwd=scratch,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), torch.load(scratch / "logits.pt")


def test_saved_folder_loads_and_computes_the_same_logits_without_the_xllm_package(tmp_path):
    model, processor = tiny_model_and_processor()
    folder = save_for_hub(model, processor, tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"]["AutoModelForMultimodalLM"] == "modeling_xllm.XLLMForConditionalGeneration"
    assert {"modeling_xllm.py", "modeling_qformer.py", "configuration_xllm.py", "processing_xllm.py"} <= {
        path.name for path in folder.iterdir()
    }

    report, logits = load_without_xllm(folder, tmp_path)
    assert report["model_module"].startswith("transformers_modules.")
    assert report["processor_module"].startswith("transformers_modules.")
    assert not report["xllm_imported"]

    inputs = processor(images=[np.full((32, 32, 3), 200, dtype=np.uint8)], text="<image> what colour is it ?")
    with torch.no_grad():
        expected = model(**inputs).logits
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)
