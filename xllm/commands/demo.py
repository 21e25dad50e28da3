"""`xllm demo`: the whole method, trained and evaluated on the synthetic world, on a CPU."""

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="Train and evaluate the whole method on a synthetic world (CPU)."
    )
    parser.add_argument("--output", default="runs/demo", help="Output folder (default: runs/demo).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--fast", action="store_true", help="Images and point clouds only, no ablation (~3 min)."
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="Also what the default leaves out for time: the linear ablation at an equal budget (the "
        "Q-Formers' stages 2 and 3, steps, learning rates and data) and 1000 DisCRn pairs per pair type "
        "and test set.",
    )
    parser.add_argument(
        "--seeds",
        type=_seed_list,
        default=None,
        help="Comma-separated seeds of the interfaces (e.g. 0,1,2): one run per seed in OUTPUT/seed-N, all on "
        "the world and stage-0 models of --seed (built once, in OUTPUT/cache), and a report of each headline "
        "figure's mean and range in OUTPUT/report.md.",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch (default: torch's). Figures repeat for the same seed, machine and "
        "thread count; another count stands in for another machine's floating-point kernels.",
    )
    parser.set_defaults(run=run)


def _seed_list(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 0,1,2, got {text!r}"
        ) from None
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"expected distinct seeds, got {text!r}")
    return seeds


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace
    from pathlib import Path

    import torch

    from xllm.demo import Demo, DemoSettings, write_demo_report
    from xllm.demo.report import write_seeds_report

    settings = DemoSettings(seed=args.seed)
    if args.fast and args.full:
        raise SystemExit("xllm demo: --fast and --full exclude each other; choose one")
    if args.threads is not None:
        if args.threads < 1:
            raise SystemExit(f"xllm demo: --threads must be a positive count, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.fast:
        settings = settings.fast()
    if args.full:
        settings = settings.full()
    output = Path(args.output)
    if args.seeds is None:
        report = Demo(settings, output).run()
        print("\n" + write_demo_report(report, output))
    else:
        reports = {}
        for seed in args.seeds:
            folder = output / f"seed-{seed}"
            seed_settings = replace(settings, seed=seed, world_seed=args.seed)
            demo = Demo(seed_settings, folder, cache_dir=output / "cache")
            reports[seed] = dict(demo.run(), seeds=args.seeds)
            write_demo_report(reports[seed], folder)
        print("\n" + write_seeds_report(reports, output))
        report = reports[args.seeds[-1]]
    print(f"Report: {output / 'report.md'}; model: {report['model']}")
    print(how_to_talk_to(report["model"]))
    return 0


def how_to_talk_to(model: str) -> str:
    """The three ways to talk to a trained model, written out for its folder."""
    return f"""
Talk to it:
  xllm chat {model} -i         # in the terminal: /image PATH, /point_cloud PATH, /reset, /quit
  xllm chat {model} --web      # a chat page on http://127.0.0.1:7860 (pip install x-llm[web])
  xllm serve {model} --served-model-name xllm-demo   # an OpenAI-compatible API on 127.0.0.1:8000, then:

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
    question = [{{"role": "user", "content": "which of the two is red ?"}}]
    answer = client.chat.completions.create(model="xllm-demo", messages=question, max_tokens=16)
    print(answer.choices[0].message.content)
"""
