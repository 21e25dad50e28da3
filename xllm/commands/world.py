"""`xllm world export DIR`: a small synthetic world as manifests and media files (the tiny configs' data)."""

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    world = subparsers.add_parser("world", help="The synthetic multimodal world of the demo.")
    actions = world.add_subparsers(dest="world_command", metavar="ACTION", required=True)
    parser = actions.add_parser(
        "export",
        help="Write a small world as manifests of the training format, with its media as files.",
        description="Writes {images,videos,speech,audio,point_clouds}.jsonl (train captions), *_qa.jsonl "
        "(train instructions), test/*.jsonl and test/discrn_*.jsonl (see xllm/world/export.py). "
        "`xllm world export data` writes what configs/tiny_*.yaml read.",
    )
    parser.add_argument("output", help="folder to write the manifests and media into (e.g. data)")
    parser.add_argument("--train", type=int, default=16, help="train items per modality (default: 16)")
    parser.add_argument("--test", type=int, default=8, help="test items per modality (default: 8)")
    parser.add_argument("--discrn-pairs", type=int, default=8, help="cross-modal test pairs per pair type")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import tempfile

    from xllm.world import WorldSizes, build_world
    from xllm.world.export import export_manifests

    sizes = WorldSizes(
        image=args.train,
        video=args.train,
        audio=args.train,
        speech=args.train,
        point_cloud=args.train,
        validation=1,
        test=args.test,
        test_in_distribution=args.test,
        discrn_pairs=args.discrn_pairs,
    )
    with tempfile.TemporaryDirectory() as folder:
        manifests = export_manifests(build_world(folder, seed=args.seed, sizes=sizes), args.output)
    print("\n".join(str(path) for path in manifests))
    return 0
