"""Every command block of the README runs as written, with the tiny model and data, offline: the README
cannot drift from the code.

Bash blocks run line by line through `xllm`'s own entry point, in a folder holding a copy of `configs/`,
in README order (the training commands write the models the evaluation commands read). Names a user
supplies are replaced by tiny local stand-ins (`STAND_INS`); lines that need GPUs, several processes or
the published sizes are parsed but not run (`PARSE_ONLY`, each with its reason); `make` lines are the
set-up that runs this suite. Python blocks run with the Hub ids they name replaced by tiny local models.
"""

import re
import shlex
import shutil
from pathlib import Path

import pytest
import torch
from test_augmentation import save_tiny_text_model
from test_conversion import build_original, lavis_state_dict
from transformers import BertConfig, BertModel, CLIPConfig, CLIPModel, LlamaForCausalLM

from xllm.cli import build_parser, main
from xllm.testing import tiny_qformer_tokenizer, tiny_text_config, tiny_tokenizer, tiny_vision_config

REPOSITORY = Path(__file__).resolve().parents[1]
README = (REPOSITORY / "README.md").read_text()

# Lines that are parsed, not run, and why.
PARSE_ONLY = {
    "x_llm_stage2.yaml": "the published sizes (a 6B LLM and EVA ViT-g) need GPUs and downloads",
    "torchrun": "several processes: tests/test_distributed.py runs torchrun on the tiny configs",
    "accelerate launch": "several GPU processes",
    "xllm demo": "minutes of training: tests/test_demo.py runs the fast demo",
    "xllm serve": "a server runs until it is stopped: the client block below runs against one on a free port",
    " -i ": "an interactive chat reads the terminal: tests/test_chat_terminal.py drives it through a pty",
    "--web": "a web page runs until it is stopped: tests/test_chat_page.py drives it in headless Chromium",
    "--benchmark": "the benchmarks' own files are not here: tests/test_benchmark_end_to_end.py runs each on its layout",
}
SERVER_URL = "http://127.0.0.1:8000/v1"  # the README's client talks to `xllm serve --port 8000`


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def command_lines() -> list[str]:
    lines = []
    for block in code_blocks("bash"):
        for line in block.splitlines():
            command = line.split(" #")[0].strip()
            if command and not command.startswith("#"):
                lines.append(command)
    return lines


def xllm_arguments(command: str) -> list[str]:
    """The `xllm` arguments of a README line (`xllm ...`, or the `-m xllm ...` of a launcher)."""
    words = shlex.split(command)
    if words[0] == "xllm":
        return words[1:]
    return words[words.index("xllm") + 1 :]  # `torchrun ... -m xllm train CONFIG`


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory) -> dict[str, str]:
    """Tiny local models for the names a user supplies in the README."""
    folder = tmp_path_factory.mktemp("stand_ins")
    build_original("instructblip", folder / "instructblip")
    build_original("blip2", folder / "blip2")
    text_llm = save_tiny_text_model(folder / "text_llm", "causal")
    tokenizer = tiny_qformer_tokenizer()
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(folder / "embedder")  # fmt: skip
    tokenizer.save_pretrained(folder / "embedder")
    return {
        "TEXT_LLM": str(text_llm),
        "SENTENCE_EMBEDDER": str(folder / "embedder"),
        "Salesforce/instructblip-vicuna-7b": str(folder / "instructblip"),
        "Salesforce/blip2-opt-2.7b": str(folder / "blip2"),
    }


def test_the_readme_shows_commands_for_every_subcommand():
    used = {xllm_arguments(line)[0] for line in command_lines() if not line.startswith("make")}
    subcommands = set(build_parser()._subparsers._group_actions[0].choices)
    assert subcommands <= used, f"no README command for {sorted(subcommands - used)}"


def test_every_bash_command_of_the_readme_runs(stand_ins, tmp_path, monkeypatch):
    shutil.copytree(REPOSITORY / "configs", tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    for line in command_lines():
        if line.startswith("make "):
            continue
        arguments = [stand_ins.get(word, word) for word in xllm_arguments(line)]
        if any(marker in line for marker in PARSE_ONLY):
            build_parser().parse_args(arguments)  # the subcommand and its flags exist
            continue
        if arguments[:2] == ["convert", "lavis"]:  # a LAVIS file that fits the model converted just before
            interface = "xllm-instructblip-7b/config.json"
            assert Path(interface).is_file(), (
                "the README converts InstructBLIP before loading a LAVIS file into it"
            )
            state = lavis_state_dict("image_", vocab=len(tiny_qformer_tokenizer()))
            state = {
                k: v for k, v in state.items() if ".layer.1.crossattention." not in k
            }  # InstructBLIP: every 2nd
            torch.save({"model": state}, arguments[2])
        assert main(arguments) == 0, line


def test_every_python_block_of_the_readme_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    LlamaForCausalLM(tiny_text_config(vocab_size=len(tokenizer))).save_pretrained(tmp_path / "llm")
    tokenizer.save_pretrained(tmp_path / "llm")
    text = tiny_text_config(vocab_size=len(tokenizer)).to_dict()
    clip = CLIPConfig(vision_config=tiny_vision_config().to_dict(), text_config=text)
    CLIPModel(clip).save_pretrained(tmp_path / "clip")
    stand_ins = {
        "lmsys/vicuna-7b-v1.5": str(tmp_path / "llm"),
        "openai/clip-vit-large-patch14": str(tmp_path / "clip"),
    }
    blocks = code_blocks("python")
    assert blocks
    for block in blocks:
        for name, local in stand_ins.items():
            block = block.replace(f'"{name}"', f'"{local}"')
        if SERVER_URL in block:
            run_against_a_server(block, tmp_path)
        else:
            exec(compile(block, "README.md", "exec"), {})


def run_against_a_server(block: str, folder: Path) -> None:
    """The client block, against the tiny model served as `xllm serve --served-model-name xllm-demo` would,
    with the files it names written beside it."""
    from media_files import png_bytes, wav_bytes
    from serving_helpers import running_server

    from xllm.testing import tiny_model_and_processor

    (folder / "photo.png").write_bytes(png_bytes("red"))
    (folder / "question.wav").write_bytes(wav_bytes(0.8))
    model, processor = tiny_model_and_processor()
    with running_server(model, processor, model_id="xllm-demo") as (url, _):
        exec(compile(block.replace(SERVER_URL, url + "/v1"), "README.md", "exec"), {})
