"""`xllm serve MODEL`: an OpenAI-compatible server (`/v1/chat/completions`, `/v1/models`, `/health`)."""

import argparse
import dataclasses
import os
from pathlib import Path

from xllm.serving.limits import ServingLimits

API_KEY_ENV_VAR = "XLLM_API_KEY"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="Serve a saved model over an OpenAI-compatible HTTP API.")
    parser.add_argument("model", help="folder of a saved X-LLM model and processor")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--api-key",
        help=f"require `Authorization: Bearer KEY` on /v1 routes (default: ${API_KEY_ENV_VAR} if set)",
    )
    parser.add_argument("--served-model-name", help="the model id clients send (default: the folder's name)")
    parser.add_argument(
        "--media-root", type=Path, help="serve local media files, only those under this folder"
    )
    parser.add_argument(
        "--allow-remote-media",
        action="store_true",
        help="let clients send http(s) media URLs for the server to fetch",
    )
    parser.add_argument("--device", help="torch device; default: cuda when available, else cpu")
    parser.add_argument("--dtype", default="auto", help="model dtype: auto, float32, bfloat16 or float16")
    parser.add_argument("--max-batch-size", type=int, default=8, help="requests per generate call")
    parser.add_argument(
        "--batch-window-ms",
        type=float,
        default=20.0,
        help="how long the first request waits for others to join",
    )
    parser.add_argument(
        "--default-max-tokens", type=int, default=256, help="max_tokens when a request gives none"
    )
    for limit in dataclasses.fields(ServingLimits):
        parser.add_argument(
            "--" + limit.name.replace("_", "-"),
            type=type(limit.default),
            default=limit.default,
            help="a limit",
        )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch
    import uvicorn
    from transformers import AutoModelForMultimodalLM, AutoProcessor

    import xllm  # noqa: F401  (registers the X-LLM classes with the Auto classes)
    from xllm.serving.app import ServedModel, build_app
    from xllm.serving.media import MediaAccess

    limits = ServingLimits(
        **{limit.name: getattr(args, limit.name) for limit in dataclasses.fields(ServingLimits)}
    )
    if args.media_root is not None and not args.media_root.is_dir():
        raise ValueError(f"--media-root must be a folder, got {args.media_root}.")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = AutoModelForMultimodalLM.from_pretrained(args.model, dtype=args.dtype).to(device).eval()
    processor = AutoProcessor.from_pretrained(args.model)
    served = ServedModel(
        model,
        processor,
        model_id=args.served_model_name or Path(args.model).resolve().name,
        limits=limits,
        access=MediaAccess(args.media_root, args.allow_remote_media),
        default_max_tokens=args.default_max_tokens,
        max_batch_size=args.max_batch_size,
        batch_window_seconds=args.batch_window_ms / 1000,
    )
    api_key = args.api_key or os.environ.get(API_KEY_ENV_VAR)
    uvicorn.run(build_app(served, api_key=api_key), host=args.host, port=args.port)
    return 0
