"""Serving throughput: 8 concurrent clients against 1, on one `xllm serve` app, through the `openai` client.

Each round runs, one after the other on the same server, one client sending its requests one by one,
then 8 clients (threads) sending theirs at once; every request is an image and a question, answered
greedily. The ratio is the median over rounds of (8 clients' requests/s) / (1 client's): what the batching
scheduler gains. Default size: a 8-layer, 512-wide LLM behind the tiny encoders (`--size tiny`: the test
model, smoke test only).

    python -m benchmarks.bench_serving [--rounds 3] [--requests 4] [--max-tokens 32] [--size tiny]
"""

import argparse
import base64
import io
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import openai
import torch
from PIL import Image
from transformers import AutoConfig

from benchmarks.timing import format_table
from xllm.modeling_xllm import XLLMConfig, XLLMForConditionalGeneration
from xllm.serving.app import ServedModel, build_app
from xllm.serving.background import serve_in_background
from xllm.serving.limits import ServingLimits
from xllm.serving.media import MediaAccess
from xllm.testing import tiny_config, tiny_processor, tiny_tokenizer

CLIENTS = 8
QUESTIONS = ["what colour is it ?", "which shape do you see ?", "how many are there ?", "describe it"]


def served_model(size: str) -> ServedModel:
    torch.manual_seed(0)
    config = tiny_config()
    if size == "small":  # the interfaces' output width follows the LLM's: build the config again around it
        llm = AutoConfig.for_model(
            "llama",
            vocab_size=len(tiny_tokenizer()),
            hidden_size=512,
            intermediate_size=1376,
            num_hidden_layers=8,
            num_attention_heads=8,
            num_key_value_heads=8,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
        )
        settings = config.to_dict()
        for name in list(settings):
            if name.endswith("_interface_config"):
                settings[name] = {**settings[name], "output_hidden_size": None}
        config = XLLMConfig.from_dict({**settings, "text_config": llm.to_dict()})
    model = XLLMForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = None  # every answer is max_tokens long: equal work per request
    processor = tiny_processor(modalities=config.modalities, num_frames=config.num_video_frames)
    return ServedModel(model, processor, "bench", ServingLimits(), MediaAccess())


def image_uri(index: int) -> str:
    """A 32 x 32 noise PNG as a data URI."""
    pixels = np.random.default_rng(index).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def image_request(index: int) -> list[dict]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": image_uri(index)}},
                {"type": "text", "text": " " + QUESTIONS[index % len(QUESTIONS)]},
            ],
        }
    ]


def run_clients(url: str, clients: int, requests: int, max_tokens: int) -> tuple[float, int]:
    """(seconds, completion tokens) for `clients` threads sending `requests` requests each."""
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=600)

    def one_client(thread: int) -> int:
        tokens = 0
        for turn in range(requests):
            answer = client.chat.completions.create(
                model="bench", messages=image_request(thread * requests + turn), max_tokens=max_tokens
            )
            tokens += answer.usage.completion_tokens
        return tokens

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        tokens = sum(pool.map(one_client, range(clients)))
    return time.perf_counter() - start, tokens


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark, print the table and return its rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=4, help="requests per client per round")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--size", choices=["small", "tiny"], default="small")
    parser.add_argument(
        "--tiny", action="store_true", help="same as --size tiny, fewer requests (smoke test)"
    )
    args = parser.parse_args(argv)
    if args.tiny:
        args.size, args.rounds, args.requests, args.max_tokens = "tiny", 1, 2, 4
    served = served_model(args.size)
    measured = {1: [], CLIENTS: []}
    with serve_in_background(build_app(served)) as url:
        run_clients(url, 1, 1, args.max_tokens)  # warm-up
        for _ in range(args.rounds):
            for clients in measured:
                measured[clients].append(run_clients(url, clients, args.requests, args.max_tokens))
    sizes = served.scheduler.batch_sizes
    mean_batch = sum(size * count for size, count in sizes.items()) / sum(sizes.values())
    rows = []
    for clients, results in measured.items():
        requests = clients * args.requests
        rows.append(
            {
                "clients": clients,
                "requests/s": statistics.median(requests / seconds for seconds, _ in results),
                "tokens/s": statistics.median(tokens / seconds for seconds, tokens in results),
            }
        )
    ratio = statistics.median(
        (CLIENTS / many[0]) / (1 / one[0]) for one, many in zip(measured[1], measured[CLIENTS], strict=True)
    )
    table = [[row["clients"], row["requests/s"], row["tokens/s"]] for row in rows]
    print(format_table(["clients", "requests/s", "tokens/s"], table))
    print(
        f"8 clients / 1 client, requests/s: {ratio:.2f}x (median of {args.rounds} rounds; goal >= 3x on 2 CPU "
        f"cores); mean batch {mean_batch:.1f} requests; {torch.get_num_threads()} torch threads, size {args.size}"
    )
    rows.append({"ratio": ratio, "mean_batch": mean_batch})
    return rows


if __name__ == "__main__":
    main()
