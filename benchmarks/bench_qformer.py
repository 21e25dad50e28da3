"""Q-Former forward + backward: ours against transformers' InstructBlipQFormerModel, same weights.

BERT-base size as in BLIP-2 / InstructBLIP: 12 layers, 768 wide, 32 queries, cross-attention every
2nd layer to 257 ViT-g tokens of width 1408, batch 8, a fixed 16-token instruction (transformers'
Q-Former needs `input_ids`). transformers' weights are renamed into ours with the converter's own
key rules. The achieved GFLOP/s of both are printed next to a plain 2048x2048 fp32 matmul timed in
the same run: that matmul is what this machine can do at best.

    python -m benchmarks.bench_qformer [--repeats 3] [--tiny]
"""

import argparse
import statistics

import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import InstructBlipQFormerConfig, InstructBlipQFormerModel

from benchmarks.timing import format_table, interleaved_times, median_ratio
from xllm.modeling_xllm.configuration_xllm import XLLMInterfaceConfig
from xllm.modeling_xllm.convert_instructblip import INTERFACE, qformer_key_rules
from xllm.modeling_xllm.convert_pointbert import rename_keys
from xllm.modeling_xllm.modeling_qformer import QFormer

SIZES = {
    "full": dict(
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        encoder_hidden_size=1408,
        num_queries=32,
        encoder_tokens=257,
        batch=8,
        instruction_length=16,
        matmul_size=2048,
    ),
    "tiny": dict(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        encoder_hidden_size=96,
        num_queries=8,
        encoder_tokens=17,
        batch=2,
        instruction_length=16,
        matmul_size=256,
    ),
}
VOCAB_SIZE = 30522  # BERT's, as in the published Q-Formers
TOLERANCE = 1e-5


def transformers_qformer(size: dict) -> InstructBlipQFormerModel:
    config = InstructBlipQFormerConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=size["hidden_size"],
        num_hidden_layers=size["num_hidden_layers"],
        num_attention_heads=size["num_attention_heads"],
        intermediate_size=size["intermediate_size"],
        encoder_hidden_size=size["encoder_hidden_size"],
        cross_attention_frequency=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        attn_implementation="sdpa",
    )
    return InstructBlipQFormerModel(config).eval()


def xllm_qformer_like(theirs: InstructBlipQFormerModel) -> QFormer:
    """Our Q-Former with the same sizes and weights (renamed with the converter's key rules)."""
    their_config = theirs.config
    config = XLLMInterfaceConfig(
        kind="qformer",
        vocab_size=their_config.vocab_size,
        hidden_size=their_config.hidden_size,
        num_hidden_layers=their_config.num_hidden_layers,
        num_attention_heads=their_config.num_attention_heads,
        intermediate_size=their_config.intermediate_size,
        encoder_hidden_size=their_config.encoder_hidden_size,
        cross_attention_frequency=their_config.cross_attention_frequency,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        layer_norm_eps=their_config.layer_norm_eps,
        max_position_embeddings=their_config.max_position_embeddings,
        pad_token_id=their_config.pad_token_id,
    )
    config._attn_implementation = "sdpa"
    prefix = INTERFACE + "qformer."
    renamed = rename_keys(
        {f"qformer.{key}": value for key, value in theirs.state_dict().items() if "position_ids" not in key},
        qformer_key_rules(),
    )
    ours = QFormer(config).eval()
    ours.load_state_dict({key.removeprefix(prefix): value for key, value in renamed.items()}, strict=True)
    return ours


def random_inputs(size: dict) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    batch = size["batch"]
    return {
        "queries": torch.randn(batch, size["num_queries"], size["hidden_size"], generator=generator),
        "input_ids": torch.randint(
            1000, VOCAB_SIZE, (batch, size["instruction_length"]), generator=generator
        ),
        "encoder_hidden_states": torch.randn(
            batch, size["encoder_tokens"], size["encoder_hidden_size"], generator=generator
        ),
    }


def forward_backward(model: torch.nn.Module, run, inputs: dict) -> torch.Tensor:
    """One training-like step: forward, a scalar loss, backward through all weights."""
    model.zero_grad(set_to_none=True)
    hidden_states = run(model, inputs)
    hidden_states.square().mean().backward()
    return hidden_states.detach()


def run_theirs(model: InstructBlipQFormerModel, inputs: dict) -> torch.Tensor:
    return model(
        input_ids=inputs["input_ids"],
        query_embeds=inputs["queries"],
        encoder_hidden_states=inputs["encoder_hidden_states"],
    ).last_hidden_state


def run_ours(model: QFormer, inputs: dict) -> torch.Tensor:
    return model(inputs["queries"], inputs["input_ids"], None, inputs["encoder_hidden_states"])


def count_flops(function) -> int:
    with FlopCounterMode(display=False) as counter:
        function()
    return counter.get_total_flops()


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark, print the table and return its rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (smoke test)")
    args = parser.parse_args(argv)
    size = SIZES["tiny" if args.tiny else "full"]
    torch.manual_seed(0)
    theirs = transformers_qformer(size)
    ours = xllm_qformer_like(theirs)
    inputs = random_inputs(size)
    matrix_a, matrix_b = torch.randn(2, size["matmul_size"], size["matmul_size"])

    steps = {
        "transformers": lambda: forward_backward(theirs, run_theirs, inputs),
        "xllm": lambda: forward_backward(ours, run_ours, inputs),
        "matmul": lambda: torch.mm(matrix_a, matrix_b),
    }
    max_abs_diff = (steps["xllm"]() - steps["transformers"]()).abs().max().item()
    if max_abs_diff > TOLERANCE:
        raise AssertionError(f"Q-Former outputs differ by {max_abs_diff:.2e} > {TOLERANCE}")
    flops = {name: count_flops(step) for name, step in steps.items()}
    times = interleaved_times(steps, args.repeats, warmup=0)
    ratio = median_ratio(times["xllm"], times["transformers"])
    rows = []
    for name in steps:
        median_ms = statistics.median(times[name])
        rows.append(
            {
                "step": name if name != "matmul" else f"matmul {size['matmul_size']}^2",
                "median_ms": median_ms,
                "gflop": flops[name] / 1e9,
                "gflop_per_s": flops[name] / 1e9 / (median_ms / 1000),
                "ratio": {"xllm": ratio, "transformers": 1.0}.get(name),
            }
        )
    print(
        f"Q-Former forward+backward, batch {size['batch']}, {size['num_hidden_layers']} layers x "
        f"{size['hidden_size']}, {size['num_queries']} queries + {size['instruction_length']} instruction tokens, "
        f"{size['encoder_tokens']} encoder tokens x {size['encoder_hidden_size']}; {torch.get_num_threads()} "
        f"threads, {args.repeats} interleaved rounds; outputs agree to {max_abs_diff:.1e}; goal: ratio <= 1.05"
    )
    columns = ["step", "median ms", "GFLOP", "GFLOP/s", "time / transformers"]
    print(format_table(columns, [[*list(row.values())[:-1], row["ratio"] or "-"] for row in rows]))
    return rows


if __name__ == "__main__":
    main()
