"""`xllm cache-features CONFIG.yaml`: run each frozen encoder once over the config's manifests and store
its features beside them, for training without it (`cache_encoder_features: true`)."""

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cache-features",
        help="Cache the frozen encoders' features of a training config's manifests.",
        description="Writes <manifest>.encoder-features/<modality>/ beside each manifest of `datasets`, for the "
        "config's `cached_modalities` (default: every modality of the model) in `cache_dtype`; an existing cache "
        "is written anew. See xllm/trainers/feature_cache.py for what a cache holds and what makes it stale.",
    )
    parser.add_argument("config", help="the YAML file `xllm train` reads")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from xllm.trainers.training_run import parse_config, write_feature_caches

    model_args, data_args, _, _ = parse_config(args.config)
    for folder in write_feature_caches(model_args, data_args):
        print(folder)
    return 0
