"""Stage-2 training step: interface trained against the frozen LLM, and the same step with the LLM unfrozen.

The model is the InstructBLIP-layout one of the other benchmarks (ViT with 257 tokens, 32-query
Q-Former, small Llama), batch 8, AdamW. Step times come from one process, interleaved. Peak
memory is how far two steps raise the resident set size above what the built model holds, each
configuration in a fresh process (Linux: the high-water mark `VmHWM` is reset through
`/proc/self/clear_refs` once the model is built, since building it peaks higher than a step). torch
allocates tensors outside Python's allocator, so `tracemalloc` would not see them. The growth
covers activations, gradients and AdamW state: what freezing saves.

    python -m benchmarks.bench_training [--repeats 3] [--tiny]
"""

import argparse
import statistics
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import torch

from benchmarks.instructblip_pair import SIZES, instructblip_pair, processors, prompts, random_images
from benchmarks.memory import peak_growth_mib
from benchmarks.timing import format_table, interleaved_times, median_ratio
from xllm.modeling_xllm import XLLMForConditionalGeneration

BATCH = 8
CONFIGURATIONS = ("LLM frozen (stage 2)", "LLM unfrozen")


def training_setup(size: dict) -> tuple[XLLMForConditionalGeneration, dict]:
    """The converted model in training mode and a batch with labels on the text only."""
    _, model = instructblip_pair(size)
    their_processor, _ = processors(size)
    inputs = dict(
        their_processor(images=random_images(BATCH, size), text=prompts(BATCH), return_tensors="pt")
    )
    labels = inputs["input_ids"].clone()
    labels[labels == model.config.image_token_id] = -100
    inputs["labels"] = labels
    return model.train(), inputs


def set_trainable(model: XLLMForConditionalGeneration, configuration: str) -> list[torch.nn.Parameter]:
    model.freeze_defaults()
    if configuration == "LLM unfrozen":
        model.unfreeze("language_model", "lm_head")
    return [parameter for parameter in model.parameters() if parameter.requires_grad]


def step(model: XLLMForConditionalGeneration, optimizer: torch.optim.Optimizer, inputs: dict) -> None:
    optimizer.zero_grad(set_to_none=True)
    model(**inputs).loss.backward()
    optimizer.step()


def peak_memory_growth_mib(size_name: str, configuration: str) -> float:
    """Run in a fresh process: how far two training steps raise the resident set size at its peak."""
    model, inputs = training_setup(SIZES[size_name])
    optimizer = torch.optim.AdamW(set_trainable(model, configuration), lr=1e-5)
    return peak_growth_mib(lambda: [step(model, optimizer, inputs) for _ in range(2)])


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark, print the table and return its rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--skip-memory", action="store_true", help="no peak-memory processes (smoke test)")
    args = parser.parse_args(argv)
    size_name = "tiny" if args.tiny else "full"
    model, inputs = training_setup(SIZES[size_name])
    total = sum(parameter.numel() for parameter in model.parameters())
    steps, trainable = {}, {}
    for configuration in CONFIGURATIONS:
        parameters = set_trainable(model, configuration)
        trainable[configuration] = sum(parameter.numel() for parameter in parameters)
        optimizer = torch.optim.AdamW(parameters, lr=1e-5)

        def run(configuration=configuration, optimizer=optimizer):
            set_trainable(model, configuration)
            step(model, optimizer, inputs)

        steps[configuration] = run
    times = interleaved_times(steps, args.repeats)
    ratio = median_ratio(times["LLM unfrozen"], times["LLM frozen (stage 2)"])
    memory = dict.fromkeys(CONFIGURATIONS, float("nan"))
    if not args.skip_memory:
        with ProcessPoolExecutor(
            max_workers=1, mp_context=get_context("spawn"), max_tasks_per_child=1
        ) as pool:
            memory = {
                name: pool.submit(peak_memory_growth_mib, size_name, name).result() for name in CONFIGURATIONS
            }
    rows = [
        {
            "configuration": name,
            "median_ms": statistics.median(times[name]),
            "time_ratio": ratio if name == "LLM unfrozen" else 1.0,
            "trainable_fraction": trainable[name] / total,
            "peak_memory_growth_mib": memory[name],
        }
        for name in CONFIGURATIONS
    ]
    print(
        f"Training step (forward, backward, AdamW), batch {BATCH}, {total / 1e6:.1f}M parameters; "
        f"{args.repeats} interleaved rounds; memory: growth of peak RSS over two steps, fresh process each"
    )
    columns = ["configuration", "median ms", "time / frozen", "trainable", "peak RSS growth MiB"]
    print(format_table(columns, [list(row.values()) for row in rows]))
    return rows


if __name__ == "__main__":
    main()
