"""`xllm --help` and every `xllm COMMAND --help` answer in under a second: the command line imports no
torch and no transformers; `import xllm` still registers the Auto classes before they are used."""

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xllm.auto_registration import LIGHT_MODULES

HELP_COMMANDS = [
    [],
    ["demo"],
    ["train"],
    ["evaluate"],
    ["discrn", "build"],
    ["augment"],
    ["world", "export"],
    ["convert", "instructblip"],
    ["convert", "lavis"],
    ["chat"],
]
HEAVY = ("torch", "transformers", "datasets", "numpy")


def xllm_executable() -> str:
    executable = shutil.which("xllm", path=str(Path(sys.executable).parent))
    assert executable is not None, "the `xllm` console script is not installed next to this Python"
    return executable


@pytest.mark.parametrize("command", HELP_COMMANDS, ids=lambda c: " ".join(c) or "xllm")
def test_help_answers_in_under_a_second(command):
    timings = []
    for _ in range(3):  # the best of three: a busy machine must not fail the test, a slow import must
        start = time.perf_counter()
        result = subprocess.run(
            [xllm_executable(), *command, "--help"], capture_output=True, text=True, timeout=60
        )
        timings.append(time.perf_counter() - start)
        assert result.returncode == 0, result.stderr
        assert "usage: xllm" in result.stdout
    assert min(timings) < 1.0, f"`xllm {' '.join(command)} --help` took {min(timings):.2f} s"


def test_the_command_line_and_the_modality_tables_import_no_heavy_package():
    modules = sorted(LIGHT_MODULES - {"xllm.__main__"}) + ["xllm.commands.chat", "xllm.commands.evaluate"]
    script = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + "print([m for m in sys.argv[1:] if m in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, *HEAVY], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


CHECK_REGISTERED = """
from transformers import AutoConfig, AutoModelForMultimodalLM, AutoProcessor
from transformers.models.auto.processing_auto import PROCESSOR_MAPPING
import xllm.modeling_xllm.configuration_xllm as configuration
import xllm.modeling_xllm.modeling_xllm as modeling
assert type(AutoConfig.for_model("xllm")) is configuration.XLLMConfig
assert configuration.XLLMConfig in PROCESSOR_MAPPING
assert AutoModelForMultimodalLM._model_mapping[configuration.XLLMConfig] is modeling.XLLMForConditionalGeneration
assert modeling.XLLMPreTrainedModel.model_card_writer is not None
"""


@pytest.mark.parametrize(
    "first_import",
    [
        "import xllm",
        "import transformers; import xllm",
        "from xllm import XLLMConfig",
        "import xllm.modeling_xllm.configuration_xllm",
        "import xllm.processing.processing_xllm",
        "from xllm.trainers import AlignmentTrainer",
        "from xllm.testing import tiny_model_and_processor",
    ],
)
def test_the_auto_classes_are_registered_whatever_is_imported_first(first_import):
    result = subprocess.run(
        [sys.executable, "-c", first_import + "\n" + CHECK_REGISTERED],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
