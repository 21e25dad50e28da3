"""Stage-2 step from cached encoder features vs the same step with the live frozen encoder.

Two sizes: the demo's (its 4-layer ViT over 64 px images, its 4 x 128 Llama and 2 x 128 Q-Formers with 8
queries) and a ViT-L-sized encoder (24 x 1024, 224 px, patch 14, random weights) with a small Llama
(4 x 512) and a 4 x 256 Q-Former with 32 queries. Batch 8 images with a short caption each; the step is
forward, backward and AdamW on the interface. Step times come from one process, interleaved; memory is
the weights the model holds (training from the cache does not load the encoder) and how far two steps
raise the resident set size, each configuration in a fresh process (see `bench_training`). The cached
step reads what the encoder gave for the same images, as a cache does.

    python -m benchmarks.bench_feature_cache [--repeats 3] [--tiny]
"""

import argparse
import statistics
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import torch
from transformers import CLIPVisionConfig, LlamaConfig, ViTConfig

from benchmarks.memory import peak_growth_mib
from benchmarks.timing import format_table, interleaved_times, median_ratio
from xllm.modeling_xllm import XLLMConfig, XLLMForConditionalGeneration, XLLMInterfaceConfig

BATCH = 8
TEXT_TOKENS = 12
VOCAB = 1000
IMAGE_TOKEN = VOCAB - 1
SIZES = {
    "demo": dict(
        vision=ViTConfig(
            image_size=64,
            patch_size=8,
            hidden_size=128,
            num_hidden_layers=4,
            num_attention_heads=4,
            intermediate_size=256,
        ),  # fmt: skip
        llm=dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4),
        interface=dict(
            hidden_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=256,
            num_query_tokens=8,
            cross_attention_frequency=1,
        ),  # fmt: skip
        image_side=64,
    ),
    "vit-l": dict(
        vision=CLIPVisionConfig(
            image_size=224,
            patch_size=14,
            hidden_size=1024,
            num_hidden_layers=24,
            num_attention_heads=16,
            intermediate_size=4096,
        ),  # fmt: skip
        llm=dict(hidden_size=512, intermediate_size=1376, num_hidden_layers=4, num_attention_heads=8),
        interface=dict(
            hidden_size=256,
            num_hidden_layers=4,
            num_attention_heads=4,
            intermediate_size=1024,
            num_query_tokens=32,
            cross_attention_frequency=2,
        ),  # fmt: skip
        image_side=224,
    ),
}
SMOKE = dict(
    vision=ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    ),  # fmt: skip
    llm=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2),
    interface=dict(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_query_tokens=4,
        cross_attention_frequency=1,
    ),  # fmt: skip
    image_side=32,
)
CONFIGURATIONS = ("live encoder", "cached features")


def setup(size: dict) -> tuple[XLLMForConditionalGeneration, dict, dict]:
    """The model in training mode (encoder and LLM frozen), a live batch and the same batch from a cache."""
    torch.manual_seed(0)
    interface = XLLMInterfaceConfig(instruction_aware=False, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                                    **size["interface"])  # fmt: skip
    config = XLLMConfig(
        text_config=LlamaConfig(
            vocab_size=VOCAB, num_key_value_heads=size["llm"]["num_attention_heads"], **size["llm"]
        ),
        vision_config=size["vision"],
        image_interface_config=interface,
        image_token_id=IMAGE_TOKEN,
    )
    model = XLLMForConditionalGeneration(config).train()
    queries = interface.num_query_tokens
    text = torch.randint(1, VOCAB - 1, (BATCH, TEXT_TOKENS))
    input_ids = torch.cat([torch.full((BATCH, queries), IMAGE_TOKEN), text], dim=1)
    labels = input_ids.masked_fill(input_ids == IMAGE_TOKEN, -100)
    common = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}
    pixel_values = torch.randn(BATCH, 3, size["image_side"], size["image_side"])
    with torch.no_grad():
        encoded = model.model.encode_media("image", pixel_values)
    cached = {
        "encoder_features": {"image": {"features": encoded.features, "window_mask": encoded.window_mask}}
    }
    return model, {**common, "pixel_values": pixel_values}, {**common, **cached}


def step(model, optimizer, inputs: dict) -> None:
    optimizer.zero_grad(set_to_none=True)
    model(**inputs).loss.backward()
    optimizer.step()


def peak_memory_growth_mib(size_name: str, configuration: str) -> float:
    """Run in a fresh process: how far two steps raise the resident set size at its peak."""
    size = SMOKE if size_name == "smoke" else SIZES[size_name]
    model, live, cached = setup(size)
    if configuration == "cached features":
        del model.model.encoders["vision"]  # what training from the cache leaves out
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    inputs = cached if configuration == "cached features" else live
    return peak_growth_mib(lambda: [step(model, optimizer, inputs) for _ in range(2)])


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark, print the table and return its rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--tiny", action="store_true", help="one tiny size (smoke test)")
    parser.add_argument("--skip-memory", action="store_true", help="no peak-memory processes (smoke test)")
    args = parser.parse_args(argv)
    rows = []
    for size_name in ["smoke"] if args.tiny else list(SIZES):
        model, live, cached = setup(SMOKE if size_name == "smoke" else SIZES[size_name])
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        steps = {
            "live encoder": lambda model=model, optimizer=optimizer, inputs=live: step(
                model, optimizer, inputs
            ),
            "cached features": lambda model=model, optimizer=optimizer, inputs=cached: step(
                model, optimizer, inputs
            ),
        }
        times = interleaved_times(steps, args.repeats)
        encoder_mib = (
            sum(p.numel() * p.element_size() for p in model.model.encoders["vision"].parameters()) / 2**20
        )
        model_mib = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
        memory = dict.fromkeys(CONFIGURATIONS, float("nan"))
        if not args.skip_memory:
            with ProcessPoolExecutor(
                max_workers=1, mp_context=get_context("spawn"), max_tasks_per_child=1
            ) as pool:
                memory = {
                    name: pool.submit(peak_memory_growth_mib, size_name, name).result()
                    for name in CONFIGURATIONS
                }
        speed_up = median_ratio(times["live encoder"], times["cached features"])
        for name in CONFIGURATIONS:
            rows.append(
                {
                    "size": size_name,
                    "configuration": name,
                    "median_ms": statistics.median(times[name]),
                    "speed_up": speed_up if name == "cached features" else 1.0,
                    "weights_mib": model_mib - (encoder_mib if name == "cached features" else 0.0),
                    "peak_memory_growth_mib": memory[name],
                }
            )
    print(
        f"Stage-2 step (forward, backward, AdamW on the interface), batch {BATCH} images + {TEXT_TOKENS} text tokens; "
        f"{args.repeats} interleaved rounds; memory: growth of peak RSS over two steps, fresh process each; goal: "
        "speed-up >= 2 at the ViT-L size"
    )
    columns = ["size", "configuration", "median ms", "speed-up", "weights MiB", "peak RSS growth MiB"]
    print(format_table(columns, [list(row.values()) for row in rows]))
    return rows


if __name__ == "__main__":
    main()
