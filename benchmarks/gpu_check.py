"""The GPU check: X-InstructBLIP-7b's shapes with random weights, one table, for when a GPU is lent.

The model is X-InstructBLIP's image path at the published size: EVA ViT-g/14 (39 x 1408, 224 px, 257
tokens), the instruction-aware Q-Former (12 x 768, 32 queries, ~188M parameters) and a Vicuna-7b-sized
Llama, in bf16 with sdpa attention on one GPU (`--smoke`: tiny sizes, fp32, on the CPU). Rows:

* stage 2, live encoder: forward, backward and AdamW on the image Q-Former, encoder and LLM frozen; step
  time, tokens/s (LLM tokens of the batch per second), peak GPU memory (weights included), and MFU: the step's FLOPs (2 per
  weight and token for the frozen encoder's forward, 4 for the frozen LLM, whose backward computes input
  gradients only, 6 for the trained Q-Former; attention's own FLOPs left out) over the GPU's dense bf16
  peak, looked up from the device name;
* stage 2, cached features: the same step from the encoder's features computed beforehand (what
  `xllm cache-features` stores; `forward`'s `encoder_features`), the encoder left out of the model;
* generation at batch 1 and 16: new tokens per second, greedy, every sample generating the full length;
  then the same for transformers' `InstructBlipForConditionalGeneration` at the same shapes (its own random
  weights; peak memory counts its own), the speed reference of the conformance issue;
* FSDP2 on one GPU (smoke test): the model sharded with `fully_shard` (Llama, Q-Former and ViT layers, then
  the root) over a one-process group, one training step, the trainable weights gathered as a checkpoint
  gathers them.

It needs torch, transformers and this package only (no datasets, accelerate, bitsandbytes or flash-attn):

    python -m benchmarks.gpu_check            # 28 s on one H200 (2026-12-04, before the InstructBLIP rows)
    python -m benchmarks.gpu_check --smoke    # tiny sizes on the CPU (the test suite runs this)
"""

import argparse
import os
import socket
import time

import torch
from transformers import Blip2VisionConfig, LlamaConfig

from benchmarks.timing import format_table
from xllm.modeling_xllm import XLLMConfig, XLLMForConditionalGeneration, XLLMInterfaceConfig
from xllm.modeling_xllm.configuration_presets import (
    VICUNA_VOCAB_SIZE,
    eva_vit_g_config,
    placeholder_token_ids,
    qformer_config,
    vicuna_text_config,
)

# Dense bf16 tensor-core peaks (TFLOP/s, without sparsity) from NVIDIA's data sheets, by a part of the
# device name; the first match wins, so the more specific names come first.
BF16_PEAK_TFLOPS = (
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.0),
    ("A100", 312.0),
)
SETTINGS = {
    "full": dict(batch=8, text_tokens=32, qformer_tokens=16, steps=10, warmup=3, new_tokens=64),
    "smoke": dict(batch=2, text_tokens=6, qformer_tokens=4, steps=2, warmup=1, new_tokens=4),
}
COLUMNS = ["check", "time (ms)", "tokens/s", "peak memory (GiB)", "MFU"]


def bf16_peak_tflops(device_name: str) -> float | None:
    """The GPU's dense bf16 peak in TFLOP/s, or None for a device outside the table (MFU is then left out)."""
    for part, peak in BF16_PEAK_TFLOPS:
        if part.lower() in device_name.lower():
            return peak
    return None


def check_config(smoke: bool) -> XLLMConfig:
    """X-InstructBLIP-7b's image path (or the same layout at tiny sizes)."""
    if smoke:
        small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
        text_config = LlamaConfig(**small, num_key_value_heads=2, vocab_size=64 + 8, pad_token_id=0)
        vision_config = Blip2VisionConfig(**small, image_size=32, patch_size=8)
        interface = XLLMInterfaceConfig(
            **small, num_query_tokens=4, cross_attention_frequency=1, max_position_embeddings=128
        )
        image_token_id = 64
    else:
        text_config, vision_config = vicuna_text_config("7b"), eva_vit_g_config()
        interface = qformer_config(instruction_aware=True)
        image_token_id = placeholder_token_ids(VICUNA_VOCAB_SIZE)["image_token_id"]
    return XLLMConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_interface_config=interface,
        image_token_id=image_token_id,
    )


def build_model(config: XLLMConfig, device: torch.device, dtype: torch.dtype) -> XLLMForConditionalGeneration:
    """Random weights, built on the device in `dtype` (the Q-Former's queries and LayerNorms too)."""
    torch.manual_seed(0)
    with torch.device(device):
        model = XLLMForConditionalGeneration._from_config(config, dtype=dtype, attn_implementation="sdpa")
    return model


def batch_inputs(config: XLLMConfig, batch: int, settings: dict, device, dtype, labels: bool = True) -> dict:
    """A batch of images with the query placeholders, a caption and an instruction for the Q-Former."""
    queries = config.image_interface_config.num_query_tokens
    vocab = config.image_token_id  # ordinary tokens lie below the placeholders
    text = torch.randint(3, vocab, (batch, settings["text_tokens"]), device=device)
    placeholders = torch.full((batch, queries), config.image_token_id, device=device)
    input_ids = torch.cat([torch.ones(batch, 1, dtype=torch.long, device=device), placeholders, text], dim=1)
    side = config.vision_config.image_size
    inputs = dict(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        pixel_values=torch.randn(batch, 3, side, side, device=device, dtype=dtype),
        qformer_input_ids=torch.randint(
            1, config.image_interface_config.vocab_size, (batch, settings["qformer_tokens"]), device=device
        ),
        qformer_attention_mask=torch.ones(batch, settings["qformer_tokens"], dtype=torch.long, device=device),
    )
    if labels:
        inputs["labels"] = input_ids.masked_fill(input_ids == config.image_token_id, -100)
    return inputs


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | str:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else "n/a"


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def step_flops(model: XLLMForConditionalGeneration, inputs: dict, encoder_runs: bool) -> float:
    """FLOPs of one stage-2 step by the 2/4/6-per-weight-and-token rule (see the module docstring)."""
    config = model.config
    batch, llm_tokens = inputs["input_ids"].shape
    patches = (config.vision_config.image_size // config.vision_config.patch_size) ** 2 + 1
    interface_tokens = config.image_interface_config.num_query_tokens + inputs["qformer_input_ids"].shape[1]
    base = model.model
    flops = 4 * parameter_count(base.language_model) * batch * llm_tokens
    flops += 4 * parameter_count(model.lm_head) * batch * llm_tokens
    flops += 6 * parameter_count(base.interfaces["image"]) * batch * interface_tokens
    if encoder_runs:
        flops += 2 * parameter_count(base.encoders["vision"]) * batch * patches
    return float(flops)


def time_steps(model, inputs: dict, settings: dict, device: torch.device) -> float:
    """Milliseconds per training step (median of `steps` after `warmup`), AdamW on the trainable weights."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    times = []
    for index in range(settings["warmup"] + settings["steps"]):
        synchronize(device)
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        synchronize(device)
        if index >= settings["warmup"]:
            times.append((time.perf_counter() - start) * 1000)
        if not torch.isfinite(loss):
            raise ValueError(f"The training loss must be finite, got {loss.item()}.")
    return sorted(times)[len(times) // 2]


def training_row(name, model, inputs, settings, device, peak_tflops, encoder_runs: bool) -> list:
    reset_peak(device)
    milliseconds = time_steps(model, inputs, settings, device)
    tokens_per_second = inputs["input_ids"].numel() / (milliseconds / 1000)
    flops_per_second = step_flops(model, inputs, encoder_runs) / (milliseconds / 1000)
    mfu = f"{100 * flops_per_second / (peak_tflops * 1e12):.1f}%" if peak_tflops else "n/a"
    return [name, milliseconds, tokens_per_second, peak_gib(device), mfu]


def instructblip_twin(config: XLLMConfig, device: torch.device, dtype: torch.dtype):
    """transformers' InstructBLIP at the same shapes, with random weights of its own: the reference for
    generation speed (its `generate` runs its LLM's own decoding loop after the prefill)."""
    from transformers import InstructBlipConfig, InstructBlipForConditionalGeneration

    interface = config.image_interface_config
    twin_config = InstructBlipConfig(
        vision_config={k: v for k, v in config.vision_config.to_dict().items() if k != "model_type"},
        qformer_config=dict(
            hidden_size=interface.hidden_size,
            num_hidden_layers=interface.num_hidden_layers,
            num_attention_heads=interface.num_attention_heads,
            intermediate_size=interface.intermediate_size,
            cross_attention_frequency=interface.cross_attention_frequency,
            encoder_hidden_size=config.vision_config.hidden_size,
            vocab_size=interface.vocab_size,
            max_position_embeddings=interface.max_position_embeddings,
        ),
        text_config=config.text_config.to_dict(),
        num_query_tokens=interface.num_query_tokens,
        image_token_index=config.image_token_id,
    )
    torch.manual_seed(0)
    with torch.device(device):
        return InstructBlipForConditionalGeneration._from_config(
            twin_config, dtype=dtype, attn_implementation="sdpa"
        )


def generation_row(name: str, model, inputs: dict, settings: dict, device, memory_before: int = 0) -> list:
    """Greedy generation of `new_tokens` per sample (each must generate all of them); peak memory less
    `memory_before` (what other models on the device hold)."""
    new_tokens = settings["new_tokens"]
    generate = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
    model.eval()
    with torch.no_grad():
        model.generate(**inputs, **dict(generate, max_new_tokens=2, min_new_tokens=2))  # warm-up
        reset_peak(device)
        synchronize(device)
        start = time.perf_counter()
        output = model.generate(**inputs, **generate)
        synchronize(device)
    seconds = time.perf_counter() - start
    prompt = inputs["input_ids"]
    generated = output.shape[1] - prompt.shape[1] if torch.equal(output[:, : prompt.shape[1]], prompt) else -1
    if generated != new_tokens:
        raise ValueError(f"Every sample must generate {new_tokens} tokens, got {generated}.")
    memory = peak_gib(device)
    return [
        name,
        1000 * seconds,
        len(prompt) * new_tokens / seconds,
        memory - memory_before / 2**30 if isinstance(memory, float) else memory,
        "n/a",
    ]


def fsdp_row(model, inputs, settings, device) -> list:
    """FSDP2 over a one-process group (nccl on a GPU, gloo on the CPU): one step, then the gathered weights."""
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    from xllm.trainers.checkpointing import trainable_state_dict

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    if "MASTER_PORT" not in os.environ:
        with socket.socket() as probe:  # a free port
            probe.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(probe.getsockname()[1])
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=0, world_size=1)
    try:
        layer_classes = tuple(
            type(module)
            for module in model.modules()
            if type(module).__name__ in ("LlamaDecoderLayer", "QFormerLayer", "Blip2EncoderLayer")
        )
        for module in list(model.modules()):
            if isinstance(module, layer_classes):
                fully_shard(module)
        fully_shard(model)
        model.train()
        reset_peak(device)
        milliseconds = time_steps(model, inputs, dict(settings, warmup=1, steps=1), device)
        weights = trainable_state_dict(model)
        expected = sum(p.numel() for p in model.parameters() if p.requires_grad)
        if sum(w.numel() for w in weights.values()) != expected:
            raise ValueError("The gathered trainable weights must be whole.")
    finally:
        dist.destroy_process_group()
    return ["FSDP2, 1 process, 1 step", milliseconds, inputs["input_ids"].numel() / (milliseconds / 1000),
            peak_gib(device), "n/a"]  # fmt: skip


def main(argv: list[str] | None = None) -> list[list]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="Tiny sizes on the CPU (the test suite's run).")
    args = parser.parse_args(argv)
    settings = SETTINGS["smoke" if args.smoke else "full"]
    if args.smoke:
        device, dtype, peak_tflops, device_name = torch.device("cpu"), torch.float32, None, "CPU (smoke)"
    else:
        if not torch.cuda.is_available():
            raise ValueError("The GPU check needs a CUDA GPU (or `--smoke` for tiny sizes on the CPU).")
        device, dtype = torch.device("cuda"), torch.bfloat16
        device_name = torch.cuda.get_device_name(device)
        peak_tflops = bf16_peak_tflops(device_name)
    started = time.perf_counter()
    config = check_config(args.smoke)
    model = build_model(config, device, dtype)
    model.train()
    model.model.interfaces["image"].requires_grad_(True)  # stage 2: the image Q-Former trains
    rows = []

    def record(row: list) -> None:  # printed as measured, so a later failure keeps the earlier figures
        rows.append(row)
        print(f"measured: {row[0]}, {row[1]:.1f} ms", flush=True)

    inputs = batch_inputs(config, settings["batch"], settings, device, dtype)
    record(training_row("stage 2, live encoder", model, inputs, settings, device, peak_tflops, True))

    with torch.no_grad():
        encoded = model.model.encode_media("image", inputs["pixel_values"])
    cached = {key: value for key, value in inputs.items() if key != "pixel_values"}
    cached["encoder_features"] = {"image": {"features": encoded.features, "window_mask": encoded.window_mask}}
    encoder = model.model.encoders.pop("vision")  # what training from the cache leaves out
    record(training_row("stage 2, cached features", model, cached, settings, device, peak_tflops, False))
    model.model.encoders["vision"] = encoder
    del encoded, cached

    generation_inputs = {
        batch: batch_inputs(config, batch, settings, device, dtype, labels=False) for batch in (1, 16)
    }
    for batch, given in generation_inputs.items():
        record(generation_row(f"generation, batch {batch}", model, given, settings, device))
    memory_before = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    twin = instructblip_twin(config, device, dtype)
    for batch, given in generation_inputs.items():
        name = f"generation, batch {batch}, transformers' InstructBLIP"
        record(generation_row(name, twin, given, settings, device, memory_before))
    del twin
    record(fsdp_row(model, inputs, settings, device))

    print(f"GPU check on {device_name}: X-InstructBLIP-7b shapes{' (smoke: tiny sizes)' if args.smoke else ''}, "
          f"{'fp32' if args.smoke else 'bf16'}, sdpa; batch {settings['batch']} for training")  # fmt: skip
    print(format_table(COLUMNS, rows))
    print(f"total {time.perf_counter() - started:.0f} s")
    return rows


if __name__ == "__main__":
    main()
