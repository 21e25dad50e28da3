"""`xllm train CONFIG.yaml`: one training stage from a YAML file (see `xllm.trainers.training_run`)."""

import argparse

RESUME_AUTO = "auto"

DESCRIPTION = """Train one stage from a YAML file. It holds the fields of the stage's arguments and of
`transformers.TrainingArguments` side by side:

    stage: 2                       # 1 interface pre-training, 2 alignment, 3 instruction tuning
    model_name_or_path: runs/stage1-export   # or `tiny_model: true`
    datasets: [data/images.jsonl, data/videos.csv]
    dataset_ratios: [3, 1]
    output_dir: runs/stage2
    max_steps: 1000

Several processes run the same file unchanged: `torchrun --nproc_per_node N -m xllm train CONFIG.yaml`
(DDP) or `accelerate launch -m xllm train CONFIG.yaml`. At the end the model is exported
(`save_pretrained` folder, or the interface alone for stage 1) and the loss curves are plotted into
`output_dir/loss_curves.png`."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="Train one stage from a YAML config.",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", help="YAML file: stage, model, datasets, TrainingArguments.")
    parser.add_argument(
        "--resume_from_checkpoint",
        default=None,
        help=f"A checkpoint folder of an earlier run, or `{RESUME_AUTO}`: the last complete checkpoint in "
        "output_dir if there is one (checkpoints a crash left half-written are skipped).",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from xllm.trainers.training_run import run_training

    run_training(args.config, args.resume_from_checkpoint)
    return 0
