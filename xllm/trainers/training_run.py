"""One training stage from a YAML file: what `xllm train CONFIG.yaml` runs.

The YAML holds the fields of three dataclasses and of `transformers.TrainingArguments`, side by
side, parsed with `HfArgumentParser`:

    stage: 2                       # 1 interface pre-training, 2 alignment, 3 instruction tuning
    model_name_or_path: runs/stage1-export   # or `tiny_model: true`
    datasets: [data/images.jsonl, data/videos.csv]
    dataset_ratios: [3, 1]
    rank_dataset_ratios: [[1, 0], [1, 1]]   # optional, multi-process: rank 0 images only, rank 1 both
    output_dir: runs/stage2
    learning_rate: 1.0e-4
    max_steps: 1000

Several processes run the same file unchanged: `torchrun --nproc_per_node N -m xllm train CONFIG.yaml`
(DDP) or `accelerate launch --config_file FSDP.yaml -m xllm train CONFIG.yaml`.
`--resume_from_checkpoint auto` continues from the last complete checkpoint, if any.

At the end the model is exported (`save_pretrained` folder, or the interface alone for stage 1)
and the loss curves are plotted into `output_dir/loss_curves.png`.
"""

from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser, TrainingArguments

from xllm.manifests import load_manifest, mix_datasets
from xllm.modeling_xllm.model_modalities import model_modality
from xllm.processing.processor_modalities import processor_modality

from .checkpointing import last_complete_checkpoint
from .data import XLLMDataCollator
from .stage1_interface_pretraining import InterfacePretrainingTrainer, pretraining_collator
from .stage2_alignment import AlignmentTrainer, init_video_from_image
from .stage3_instruction_tuning import InstructionTuningTrainer, default_lora_config

LOSS_CURVES_NAME = "loss_curves.png"
RESUME_AUTO = "auto"


@dataclass
class ModelArguments:
    """Which model the stage starts from."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "A saved X-LLM folder (or Hub id)."}
    )
    tiny_model: bool = field(default=False, metadata={"help": "The tiny random model of `xllm.testing`."})
    interface_checkpoints: dict[str, str] | None = field(
        default=None, metadata={"help": "Stage-1 interface folders to load, by modality."}
    )
    attn_implementation: str | None = field(
        default=None, metadata={"help": "`sdpa` (default), `eager`, `flash_attention_2`, ... for every part."}
    )


@dataclass
class DataArguments:
    """Local manifests (JSONL/CSV/Parquet) mixed with sampling ratios."""

    datasets: list[str] = field(default_factory=list, metadata={"help": "Manifest paths."})
    dataset_ratios: list[float] | None = field(default=None, metadata={"help": "One ratio per manifest."})
    rank_dataset_ratios: list[list[float]] | None = field(
        default=None,
        metadata={
            "help": "Multi-process: one `dataset_ratios` list per process (by rank), 0 leaving a manifest "
            "out on that process, so that processes train on different modality mixes."
        },
    )
    streaming: bool = field(default=False, metadata={"help": "Decode media lazily (IterableDataset)."})
    speech_transcript_column: str | None = field(
        default=None,
        metadata={
            "help": "Stages 2-3: the column of speech transcripts (CIF target lengths, quantity loss)."
        },
    )
    text_column: str = field(
        default="response", metadata={"help": "Stage 1: the caption or transcript column."}
    )
    cache_encoder_features: bool = field(
        default=False,
        metadata={
            "help": "Train from the frozen encoders' features, cached beside the manifests (`xllm cache-features`; "
            "written here when missing, refused when stale); the encoders that only cached modalities use are "
            "not loaded. Needs `model_name_or_path`."
        },
    )
    cached_modalities: list[str] | None = field(
        default=None, metadata={"help": "The modalities to read from caches (default: all the model has)."}
    )
    cache_dtype: str = field(default="float32", metadata={"help": "float32, float16 or bfloat16."})


@dataclass
class StageArguments:
    """What the stage trains."""

    stage: int = field(default=2, metadata={"help": "1, 2 or 3."})
    modality: str = field(default="image", metadata={"help": "Stage 1: the interface to pre-train."})
    modalities: list[str] | None = field(default=None, metadata={"help": "Stage 2: interfaces to align."})
    init_video_from_image: bool = field(default=False, metadata={"help": "Stage 2: video starts as image."})
    lora_rank: int = field(default=0, metadata={"help": "Stage 3: LoRA rank on the LLM (0: no LoRA)."})
    interface_parts: str = field(
        default="all",
        metadata={
            "help": "Stages 2 and 3: `all` of each trained interface, or `queries_and_adapters` (X-LLM's "
            "released stage 3; its video stage 2 over the image Q-Former)."
        },
    )
    shuffle_modality_order: bool = field(default=False, metadata={"help": "Stage 3: permute media parts."})
    ctc_weight: float = field(
        default=0.0, metadata={"help": "Stage 1 C-Former: weight of CTC on the encoder."}
    )


ARGUMENT_CLASSES = (ModelArguments, DataArguments, StageArguments, TrainingArguments)


def parse_config(path: str | Path, overrides: dict | None = None):
    """(model, data, stage, training) arguments from a YAML file; `overrides` replace its keys."""
    import yaml

    values = yaml.safe_load(Path(path).read_text()) or {}
    values.update(overrides or {})
    model_args, data_args, stage_args, training_args = HfArgumentParser(ARGUMENT_CLASSES).parse_dict(values)
    if stage_args.stage not in (1, 2, 3):
        raise ValueError(f"`stage` must be 1, 2 or 3, got {stage_args.stage}.")
    if model_args.tiny_model == (model_args.model_name_or_path is not None):
        raise ValueError("Set exactly one of `model_name_or_path` and `tiny_model: true`.")
    return model_args, data_args, stage_args, training_args


def load_starting_model(model_args: ModelArguments, without_encoders: tuple[str, ...] = ()):
    """The starting model and its processor; the one place where presets plug in. `without_encoders`
    leaves those encoders out (training from cached features)."""
    if model_args.tiny_model:
        from xllm.testing import tiny_model_and_processor

        model, processor = tiny_model_and_processor()
    else:
        from transformers import AutoProcessor

        from xllm import XLLMForConditionalGeneration

        model = XLLMForConditionalGeneration.from_pretrained(
            model_args.model_name_or_path,
            without_encoders=without_encoders,
            attn_implementation=model_args.attn_implementation,
        )
        processor = AutoProcessor.from_pretrained(model_args.model_name_or_path)
    if model_args.interface_checkpoints:
        from .stage1_interface_pretraining import load_interface_checkpoint

        for modality, folder in model_args.interface_checkpoints.items():
            load_interface_checkpoint(model, modality, folder)
    return model.train(), processor


def process_dataset_ratios(data_args: DataArguments, process_index: int, world_size: int) -> list[float]:
    """This process's sampling ratio for each manifest: its row of `rank_dataset_ratios` when given
    (each process then mixes its own sources, and reads its 1/world_size share of that mixture, as
    the distributed sampler does), else `dataset_ratios` (default: all equal)."""
    if data_args.rank_dataset_ratios is None:
        return data_args.dataset_ratios or [1.0] * len(data_args.datasets)
    rows = data_args.rank_dataset_ratios
    if len(rows) != world_size or any(len(row) != len(data_args.datasets) for row in rows):
        raise ValueError(
            f"`rank_dataset_ratios` must hold {world_size} rows (one per process) of {len(data_args.datasets)} "
            f"ratios (one per manifest), got {rows}."
        )
    if not any(rows[process_index]):
        raise ValueError(f"`rank_dataset_ratios` leaves process {process_index} without data: {rows}.")
    return rows[process_index]


def model_modalities_of(model_args: ModelArguments) -> tuple[str, ...]:
    """The modalities of the starting model, read from its config alone."""
    if model_args.tiny_model:
        from xllm.testing import tiny_config

        return tiny_config().modalities
    from transformers import AutoConfig

    import xllm  # noqa: F401  (registers the config class)

    return AutoConfig.from_pretrained(model_args.model_name_or_path).modalities


def cached_modalities(model_args: ModelArguments, data_args: DataArguments) -> tuple[str, ...]:
    """The modalities this run reads from feature caches (none without `cache_encoder_features`)."""
    if not data_args.cache_encoder_features:
        return ()
    if model_args.tiny_model:
        raise ValueError(
            "`cache_encoder_features` needs `model_name_or_path`: the encoders it leaves out are written back "
            "from that folder when the model is exported (save the tiny model first)."
        )
    available = model_modalities_of(model_args)
    wanted = tuple(data_args.cached_modalities or available)
    unknown = sorted(set(wanted) - set(available))
    if unknown:
        raise ValueError(f"`cached_modalities` must be among the model's {list(available)}, got {unknown}.")
    return wanted


def encoders_only_cached(modalities: tuple[str, ...], cached: tuple[str, ...]) -> tuple[str, ...]:
    """Encoders every one of whose modalities (of the model) is read from caches: they need not load."""
    needed = {model_modality(m).encoder for m in modalities if m not in cached}
    return tuple(sorted({model_modality(m).encoder for m in cached} - needed))


def write_feature_caches(
    model_args: ModelArguments, data_args: DataArguments, only_missing: bool = False
) -> list[Path]:
    """`xllm cache-features`: every manifest's caches of the cached modalities, written with the full
    model (`only_missing`: those that do not exist yet, as `xllm train` does before training)."""
    from .feature_cache import build_feature_cache, cache_folder, media_paths

    modalities = tuple(data_args.cached_modalities or model_modalities_of(model_args))
    todo = [
        (manifest, modality)
        for manifest in data_args.datasets
        for modality in modalities
        if not (only_missing and cache_folder(manifest, modality).exists())
        and media_paths(manifest, modality)
    ]
    if not todo:
        return []
    model, processor = load_starting_model(model_args)
    model.eval()
    written = []
    for manifest in dict.fromkeys(manifest for manifest, _ in todo):
        wanted = [modality for path, modality in todo if path == manifest]
        written += build_feature_cache(
            manifest, model, processor, wanted, dtype=data_args.cache_dtype
        ).values()
    return written


def build_trainer(model_args, data_args, stage_args, training_args):
    if not data_args.datasets:
        raise ValueError("`datasets` must list at least one manifest.")
    cached = cached_modalities(model_args, data_args)
    feature_caches = None
    if cached:
        from .feature_cache import FeatureCache, FeatureCaches, media_paths

        with training_args.main_process_first(desc="writing missing feature caches"):
            write_feature_caches(model_args, data_args, only_missing=True)  # the others find them written
    model, processor = load_starting_model(
        model_args, encoders_only_cached(model_modalities_of(model_args), cached) if cached else ()
    )
    if cached:
        feature_caches = FeatureCaches(
            FeatureCache(manifest, model, processor, modality, data_args.cache_dtype)
            for manifest in data_args.datasets
            for modality in cached
            if media_paths(manifest, modality)
        )
    undecoded = tuple(processor_modality(m).keyword for m in cached)
    ratios = process_dataset_ratios(data_args, training_args.process_index, training_args.world_size)
    chosen = [
        (index, path)
        for index, (path, ratio) in enumerate(zip(data_args.datasets, ratios, strict=True))
        if ratio != 0
    ]
    sources = [
        load_manifest(path, streaming=data_args.streaming, name=f"datasets[{index}]", undecoded=undecoded)
        for index, path in chosen
    ]
    dataset = mix_datasets(sources, [ratios[index] for index, _ in chosen], seed=training_args.seed)
    common = dict(args=training_args, train_dataset=dataset, processing_class=processor)
    if stage_args.stage == 1:
        variable_length = model_modality(stage_args.modality).layout == "sequence"
        return InterfacePretrainingTrainer(
            model,
            modality=stage_args.modality,
            wrapper_kwargs={"ctc_weight": stage_args.ctc_weight} if variable_length else None,
            data_collator=pretraining_collator(
                model, processor, stage_args.modality, data_args.text_column, feature_caches
            ),
            **common,
        )
    if stage_args.stage == 2:
        if stage_args.init_video_from_image:
            init_video_from_image(model)
        return AlignmentTrainer(
            model,
            modalities=stage_args.modalities,
            interface_parts=stage_args.interface_parts,
            data_collator=XLLMDataCollator(
                processor,
                speech_transcript_column=data_args.speech_transcript_column,
                feature_caches=feature_caches,
            ),
            **common,
        )
    lora = (
        default_lora_config(rank=stage_args.lora_rank, alpha=2 * stage_args.lora_rank)
        if stage_args.lora_rank
        else None
    )
    collator = XLLMDataCollator(
        processor,
        shuffle_modality_order=stage_args.shuffle_modality_order,
        speech_transcript_column=data_args.speech_transcript_column,
        feature_caches=feature_caches,
    )
    return InstructionTuningTrainer(
        model, lora_config=lora, interface_parts=stage_args.interface_parts, data_collator=collator, **common
    )


def plot_loss_curves(log_history: list[dict], path: str | Path) -> None:
    """Every logged training loss (`loss` and each `loss_<term>`) against the step, in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    names = sorted({key for entry in log_history for key in entry if key.startswith("loss")})
    figure, axes = pyplot.subplots(figsize=(7, 4))
    for name in names:
        points = [(entry["step"], entry[name]) for entry in log_history if name in entry]
        axes.plot(*zip(*points, strict=True), label=name)
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)


def resolve_checkpoint(resume_from_checkpoint: str | None, output_dir: str) -> str | None:
    """`auto` -> the last complete checkpoint in `output_dir`, or None (a fresh start) when there is
    none, so that relaunching the same command after a crash or preemption continues the run."""
    if resume_from_checkpoint == RESUME_AUTO:
        return last_complete_checkpoint(output_dir)
    return resume_from_checkpoint


def run_training(config: str, resume_from_checkpoint: str | None = None, overrides: dict | None = None):
    """Train one stage from `config`; returns the trainer (its `state.log_history` holds the losses).

    `resume_from_checkpoint` is a checkpoint folder, or `auto` for the last complete one if any.
    """
    model_args, data_args, stage_args, training_args = parse_config(config, overrides)
    trainer = build_trainer(model_args, data_args, stage_args, training_args)
    checkpoint = resolve_checkpoint(
        resume_from_checkpoint or training_args.resume_from_checkpoint, training_args.output_dir
    )
    trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(training_args.output_dir)
    if trainer.is_world_process_zero():
        plot_loss_curves(trainer.state.log_history, Path(training_args.output_dir) / LOSS_CURVES_NAME)
    trainer.accelerator.wait_for_everyone()  # every process returns once the export is on disk
    return trainer


__all__ = [
    "LOSS_CURVES_NAME",
    "RESUME_AUTO",
    "build_trainer",
    "parse_config",
    "run_training",
    "write_feature_caches",
]
