"""A 4- or 8-bit frozen LLM (bitsandbytes, on CPU): only the LLM's linear layers are quantized, through both
entry points; the interfaces stay fp32 and train; QLoRA in stage 3; loading never holds the whole
unquantized LLM beyond what transformers' own quantized loading holds."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_trainers import losses, write_image_manifest
from transformers import AutoModelForCausalLM, BitsAndBytesConfig, CLIPVisionModel

from xllm import XLLMConfig, XLLMForConditionalGeneration
from xllm.manifests import load_manifest
from xllm.testing import (
    tiny_interface_config,
    tiny_processor,
    tiny_text_config,
    tiny_tokenizer,
    tiny_vision_config,
)
from xllm.trainers.data import XLLMDataCollator
from xllm.trainers.stage3_instruction_tuning import InstructionTuningTrainer, default_lora_config

bnb = pytest.importorskip("bitsandbytes")

QUANTIZATIONS = {
    "4bit": (
        lambda: BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
        ),
        bnb.nn.Linear4bit,
    ),
    "8bit": (lambda: BitsAndBytesConfig(load_in_8bit=True), bnb.nn.Linear8bitLt),
}


def llm_config(vocab_size: int, hidden_size: int = 64, num_hidden_layers: int = 2):
    """The tiny Llama, 64 wide: bitsandbytes' CPU kernels quantize in blocks of 64 inputs."""
    config = tiny_text_config("llama", vocab_size=vocab_size)
    config.update(
        dict(
            hidden_size=hidden_size,
            intermediate_size=2 * hidden_size,
            head_dim=hidden_size // 4,
            num_hidden_layers=num_hidden_layers,
        )
    )
    return config


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """An LLM (without the placeholder tokens), a CLIP vision tower and a saved image-video X-LLM folder."""
    folder = tmp_path_factory.mktemp("quantization")
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(llm_config(len(tiny_tokenizer()) - 5)).save_pretrained(folder / "llm")
    CLIPVisionModel(tiny_vision_config()).save_pretrained(folder / "vision")
    tokenizer = tiny_tokenizer()
    config = XLLMConfig(
        text_config=llm_config(len(tokenizer)),
        vision_config=tiny_vision_config(),
        image_interface_config=tiny_interface_config(),
        video_interface_config=tiny_interface_config(),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<video>"),
        num_video_frames=4,
    )
    model = XLLMForConditionalGeneration(config)
    torch.nn.init.normal_(model.lm_head.weight, std=1.0)  # logits the interface can move (see test_trainers)
    model.save_pretrained(folder / "xllm")
    return folder


def load(parts: Path, entry_point: str, bits: str) -> XLLMForConditionalGeneration:
    quantization_config = QUANTIZATIONS[bits][0]()
    if entry_point == "from_pretrained":
        return XLLMForConditionalGeneration.from_pretrained(
            parts / "xllm", quantization_config=quantization_config
        )
    interfaces = {"image": tiny_interface_config(), "video": tiny_interface_config()}
    return XLLMForConditionalGeneration.from_pretrained_parts(
        parts / "llm",
        {"vision": parts / "vision"},
        interfaces,
        tokenizer=tiny_tokenizer(),
        quantization_config=quantization_config,
    )


def image_batch(model: XLLMForConditionalGeneration) -> dict[str, torch.Tensor]:
    num_queries = model.config.image_interface_config.num_query_tokens
    ids = [1] + [model.config.image_token_id] * num_queries + [9, 12, 20, 2]
    input_ids = torch.tensor([ids, ids])
    return dict(
        input_ids=input_ids,
        pixel_values=torch.randn(2, 3, 32, 32),
        qformer_input_ids=torch.tensor([[2, 10, 11, 3]] * 2),
        qformer_attention_mask=torch.ones(2, 4, dtype=torch.long),
        labels=input_ids,
    )


@pytest.mark.parametrize("bits", sorted(QUANTIZATIONS))
@pytest.mark.parametrize("entry_point", ["from_pretrained", "from_pretrained_parts"])
def test_only_the_llm_is_quantized_and_the_fp32_interfaces_receive_gradients(parts, entry_point, bits):
    model = load(parts, entry_point, bits)
    quantized_class = QUANTIZATIONS[bits][1]
    llm_linears = [m for m in model.model.language_model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(llm_linears) == 14 and all(isinstance(m, quantized_class) for m in llm_linears)
    for name in ("encoders", "interfaces"):
        part = getattr(model.model, name)
        linears = [m for m in part.modules() if isinstance(m, torch.nn.Linear)]
        assert linears and not any(isinstance(m, quantized_class) for m in linears), name
        assert {p.dtype for p in part.parameters()} == {torch.float32}, name
    assert type(model.lm_head) is torch.nn.Linear
    quantization = model.config.quantization_config
    if isinstance(quantization, dict):
        quantization = BitsAndBytesConfig.from_dict(quantization)
    assert {"model.encoders", "model.interfaces", "lm_head"} <= set(quantization.llm_int8_skip_modules)

    model.unfreeze("interfaces.image")
    loss = model(**image_batch(model)).loss
    loss.backward()
    interface = model.model.interfaces["image"]
    assert interface.query_tokens.grad is not None and interface.query_tokens.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.model.language_model.parameters())


def test_a_composed_quantized_model_saves_and_loads_back_with_the_same_logits(parts, tmp_path):
    model = load(parts, "from_pretrained_parts", "8bit").eval()
    model.save_pretrained(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert "quantization_config" not in saved["text_config"]  # said once, by the composite config
    reloaded = XLLMForConditionalGeneration.from_pretrained(tmp_path / "saved").eval()
    assert isinstance(reloaded.model.language_model.layers[0].mlp.up_proj, bnb.nn.Linear8bitLt)
    batch = image_batch(model)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, model(**batch).logits)


def test_qlora_stage_three_lowers_the_loss_over_twenty_steps(parts, tmp_path):
    from test_trainers import training_args

    model = load(parts, "from_pretrained", "4bit")
    processor = tiny_processor(
        model.config.image_interface_config.num_query_tokens,
        image_size=model.config.vision_config.image_size,
        num_frames=model.config.num_video_frames,
        modalities=model.config.modalities,
    )
    trainer = InstructionTuningTrainer(
        model,
        args=training_args(tmp_path / "qlora", max_steps=20, learning_rate=1e-2),
        lora_config=default_lora_config(),
        train_dataset=load_manifest(write_image_manifest(tmp_path)),
        data_collator=XLLMDataCollator(processor),
        processing_class=processor,
    )
    trainable = {name for name, p in trainer.model.named_parameters() if p.requires_grad}
    assert any("lora_" in name for name in trainable) and any(".interfaces." in name for name in trainable)
    assert not any(
        ".encoders." in name or ("language_model" in name and "lora_" not in name) for name in trainable
    )
    lora_layer = trainer.model.base_model.model.model.language_model.layers[0].self_attn.q_proj
    assert isinstance(lora_layer.base_layer, bnb.nn.Linear4bit)
    trainer.train()
    history = losses(trainer)
    assert len(history) == 20
    assert sum(history[-5:]) / 5 < sum(history[:5]) / 5 - 0.1


def test_stage_three_refuses_a_quantized_llm_without_adapters(parts, tmp_path):
    from test_trainers import training_args

    model = load(parts, "from_pretrained", "4bit")
    with pytest.raises(ValueError, match="lora_config"):
        InstructionTuningTrainer(model, args=training_args(tmp_path / "plain"), lora_config=None)


# Run in a fresh process: loads the way `how` says and prints, in MiB above the memory once torch, transformers,
# bitsandbytes and xllm are imported, its peak resident memory (ru_maxrss) and its peak anonymous memory (RssAnon
# sampled every millisecond). The safetensors files are memory-mapped: their pages count in the resident memory
# while they are read (and as long as a zero-copy tensor maps them), but are the OS's page cache, dropped under
# pressure; a copy of the unquantized LLM that a process makes and holds is anonymous memory.
PEAK_MEMORY_SCRIPT = """
import json, resource, sys, threading, time
import bitsandbytes, torch, transformers
from transformers import AutoModelForCausalLM, BitsAndBytesConfig
from xllm import XLLMForConditionalGeneration
from xllm.testing import tiny_interface_config, tiny_tokenizer

def status_mib(field):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field)) / 1024

peak_anonymous, loading = 0.0, True

def sample():
    global peak_anonymous
    while loading:
        peak_anonymous = max(peak_anonymous, status_mib("RssAnon"))
        time.sleep(0.001)

how, llm, vision, warm_up_llm = sys.argv[1:5]
config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32)

def load(llm):
    if how == "transformers_4bit":
        return AutoModelForCausalLM.from_pretrained(llm, quantization_config=config)
    return XLLMForConditionalGeneration.from_pretrained_parts(
        llm, {"vision": vision}, {"image": tiny_interface_config()}, tokenizer=tiny_tokenizer(),
        quantization_config=config if how == "parts_4bit" else None,
    )

load(warm_up_llm)  # the same path once on a tiny LLM: the code it imports and initialises is not the LLM's memory
resident, anonymous = status_mib("VmRSS"), status_mib("RssAnon")
sampler = threading.Thread(target=sample)
sampler.start()
model = load(llm)
loading = False
sampler.join()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"peak_resident": peak - resident, "peak_anonymous": peak_anonymous - anonymous}))
"""


def peak_memory(how: str, llm: Path, vision: Path, warm_up_llm: Path) -> dict[str, float]:
    """`how` (transformers_4bit: `AutoModelForCausalLM` in 4 bits; parts_4bit / parts_fp32: `from_pretrained_parts`
    with the LLM in 4 bits / unquantized) in a fresh process, after the same load of `warm_up_llm` (a tiny one):
    its peak memory in MiB above what the process held before (see `PEAK_MEMORY_SCRIPT`)."""
    result = subprocess.run(
        [sys.executable, "-c", PEAK_MEMORY_SCRIPT, how, str(llm), str(vision), str(warm_up_llm)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_quantized_composition_never_holds_the_whole_unquantized_llm(parts, tmp_path):
    """A ~19M-parameter LLM (72 MiB in fp32): composing a model around it in 4 bits never holds a copy of the
    whole unquantized LLM (its peak anonymous memory stays below the LLM's fp32 size). The peak is measured after
    the same composition of a tiny LLM in that process: without it, the modules that the first load imports and
    initialises count too (they took the peak from 28 to 75 MiB between runs on a busy machine)."""
    torch.manual_seed(0)
    llm = tmp_path / "llm"
    config = llm_config(len(tiny_tokenizer()) - 5, hidden_size=512, num_hidden_layers=8)
    AutoModelForCausalLM.from_config(config).save_pretrained(llm)
    fp32_mib = sum(f.stat().st_size for f in llm.glob("*.safetensors")) / 2**20
    figures = peak_memory("parts_4bit", llm, parts / "vision", warm_up_llm=parts / "llm")
    print(f"LLM {fp32_mib:.0f} MiB in fp32; peak memory above the warmed-up process (MiB): {figures}")
    assert figures["peak_anonymous"] < fp32_mib
