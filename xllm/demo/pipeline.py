"""`xllm demo`: the whole method on the synthetic world, on a CPU, in minutes.

Phases, each timed:
  world      build the synthetic world (cached)
  stage 0    the stand-ins for pretrained models: word-level tokenizer + tiny Llama trained on the
             world's text; one small encoder per modality pre-trained on the world (cached)
  assemble   `XLLMForConditionalGeneration.from_pretrained_parts`: frozen LLM and encoders, new
             interfaces (Q-Formers; the C-Former for speech)
  stage 1    interface pre-training: BLIP-2 objectives for Q-Formers, CIF speech recognition for
             the C-Former (no LLM)
  features   each training item's frozen-encoder features, computed once for stages 2 and 3
             (`settings.cached_encoder_features`)
  stage 2    alignment: every interface against the frozen LLM, captioning / transcription
  stage 3    instruction tuning: every (instruction, answer) pair of every modality, mixed
  evaluate   on three sets: the training split (what was taught), the in-distribution test split
             (new draws of the trained combinations: the papers' claims) and the held-out
             combinations (compositional generalisation): captioning + attribute accuracy, speech
             WER, and on both test sets DisCRn-style cross-modal accuracy next to chance, the
             caption baseline and the linear-interface ablation
"""

import functools
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from transformers import BertTokenizer, BlipImageProcessor, PreTrainedModel, TrainingArguments

from ..manifests import media_keywords
from ..modeling_xllm.configuration_xllm import XLLMInterfaceConfig
from ..modeling_xllm.model_modalities import model_modality
from ..modeling_xllm.modeling_xllm import XLLMForConditionalGeneration
from ..processing.feature_extraction_audio_xllm import XLLMAudioFeatureExtractor
from ..processing.feature_extraction_point_cloud_xllm import XLLMPointCloudFeatureExtractor
from ..processing.feature_extraction_speech_xllm import XLLMSpeechFeatureExtractor
from ..processing.processing_xllm import XLLMProcessor
from ..processing.video_processing_xllm import XLLMVideoProcessor
from ..trainers import (
    AlignmentTrainer,
    InstructionTuningTrainer,
    InterfacePretrainingTrainer,
    XLLMDataCollator,
    init_video_from_image,
)
from ..trainers.feature_cache import FeatureCaches, MemoryFeatureCache
from ..trainers.stage1_interface_pretraining import pretraining_collator
from ..world import build_world, load_world, text_comparisons
from ..world.build import DISCRN_SETS, WorldSizes
from ..world.splits import TEST_SETS
from ..world.vocabulary import CAPTION_INSTRUCTIONS
from . import encoders as stage0_encoders
from .data import (
    caption_examples,
    chat_example,
    comparison_example,
    instruction_examples,
    same_modality_comparisons,
    world_items,
    world_media,
)
from .evaluation import captioning_scores, cif_token_counts, discrn_scores, greedy_answers, speech_scores
from .language_model import language_examples, text_comparison_accuracy, train_language_model, world_tokenizer
from .settings import DemoSettings, StepBudget

# Queries per image / frame / audio window / cloud. Video has the image interface's shape, so that it
# can start from the trained image interface (X-LLM); two frames show where and how fast a shape moves.
QUERIES = {"image": 8, "video": 8, "audio": 6, "point_cloud": 6}
VIDEO_FRAMES = 2
IMAGE_SIDE = 64
AUDIO_WINDOW_SECONDS = 1.6  # one window covers a 1.5 s sound
POINTS = 512
DISCRN_PAIRS = {"image_point_cloud": ("image", "point_cloud"), "audio_video": ("audio", "video")}
# Evaluation set -> its world split: what was taught, then the two test sets (splits.TEST_SETS).
EVALUATION_SETS = {"train": "train", **TEST_SETS}


def stable_digest(settings: dict) -> str:
    """A short name for a set of settings, the same in every process (unlike `hash`)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


class Demo:
    """One run of the demo; `run()` returns the report (also written to `output_dir`)."""

    def __init__(
        self,
        settings: DemoSettings,
        output_dir: str | Path,
        log: Callable[[str], None] = print,
        cache_dir: str | Path | None = None,
    ):
        """`cache_dir` (default `output_dir/cache`) holds the world and stage 0; runs that share them
        (seeds of `xllm demo --seeds`) share it."""
        self.settings = settings
        self.output = Path(output_dir)
        self.cache = Path(cache_dir) if cache_dir is not None else self.output / "cache"
        self.log = log
        self.timings: dict[str, float] = {}
        self.losses: dict[str, list[float]] = {}
        self.diagnostics: dict[str, object] = {}

    def phase(self, name: str, function: Callable, *args, **kwargs):
        self.log(f"\n== {name}")
        start = time.perf_counter()
        result = function(*args, **kwargs)
        self.timings[name] = time.perf_counter() - start
        self.log(f"   {name}: {self.timings[name]:.1f} s")
        return result

    # ---------------------------------------------------------------- world and stage 0

    def world(self) -> dict:
        s = self.settings
        sizes = WorldSizes(
            **{m: s.world_train.get(m, 0) for m in ("image", "point_cloud", "video", "audio", "speech")},
            test=s.world_test,
            test_in_distribution=s.world_test,
            validation=min(50, s.world_test),
            discrn_pairs=s.discrn_pairs,
            video_frames=8,
            points=POINTS,
        )
        folder = self.cache / f"world-seed{s.stand_in_seed}-{stable_digest(asdict(sizes))}"
        if (folder / "world.json").exists():
            self.log(f"   cached: {folder}")
            return load_world(folder)
        return build_world(folder, seed=s.stand_in_seed, sizes=sizes)

    def stage0_folder(self) -> Path:
        s = self.settings
        key = stable_digest(
            {
                "seed": s.stand_in_seed,
                "train": s.world_train,
                "lm": asdict(s.language_model),
                "enc": {name: asdict(budget) for name, budget in s.encoders.items()},
                "augmented": s.encoder_augmented_fraction,
                # only when on, so that caches built before the option existed stay valid
                **({"motion": s.encoder_motion_videos} if s.encoder_motion_videos else {}),
                "speech": asdict(s.speech_encoder),
                "modalities": s.modalities,
                "comparisons": s.text_comparisons,
                # encoders measured on every evaluation set (speech: its CTC WER), the LLM on both test sets
                "diagnostics": 3,
            },
        )
        return self.cache / f"stage0-{key}"

    def language_model(self, world: dict) -> Path:
        folder = self.stage0_folder() / "llm"
        if (folder / "config.json").exists():
            self.log(f"   cached: {folder}")
            self.diagnostics.update(json.loads((folder / "diagnostics.json").read_text()))
            return folder
        tokenizer = world_tokenizer()
        seed = self.settings.stand_in_seed
        comparisons = text_comparisons(self.settings.text_comparisons, seed=seed)
        modalities = {m: world[m] for m in self.settings.modalities}
        examples = language_examples(modalities, comparisons, seed=seed)
        model, losses = train_language_model(
            tokenizer,
            examples,
            self.settings.language_model,
            seed,
            progress=self.progress("LLM", self.settings.language_model),
        )
        self.losses["stage 0: language model"] = losses
        diagnostics = {}
        for test_set, key in DISCRN_SETS.items():
            for pair_name, modalities_of_pair in DISCRN_PAIRS.items():
                if set(modalities_of_pair) <= set(self.settings.modalities):
                    rows = world[key][pair_name].select_columns(
                        ["question", "answer", "first_caption", "second_caption"]
                    )
                    diagnostics[f"llm_text_comparison_{test_set}_{pair_name}"] = text_comparison_accuracy(
                        model, tokenizer, rows.to_list()
                    )
        self.diagnostics.update(diagnostics)
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        (folder / "diagnostics.json").write_text(json.dumps(diagnostics))
        (folder / "losses.json").write_text(json.dumps(losses))
        return folder

    def encoders(self, world: dict, processor: XLLMProcessor, tokenizer) -> dict[str, Path]:
        folders = {}
        for name in sorted({model_modality(m).encoder for m in self.settings.modalities}):
            folder = self.stage0_folder() / f"encoder-{name}"
            if not (folder / "config.json").exists():
                encoder, diagnostics = self.pretrain_encoder(name, world, processor, tokenizer)
                encoder.save_pretrained(folder)
                (folder / "diagnostics.json").write_text(json.dumps(diagnostics))
            else:
                self.log(f"   cached: {folder}")
            self.diagnostics.update(json.loads((folder / "diagnostics.json").read_text()))
            folders[name] = folder
        return folders

    def pretrain_encoder(
        self, name: str, world: dict, processor: XLLMProcessor, tokenizer
    ) -> tuple[PreTrainedModel, dict]:
        modality = {"vision": "image"}.get(name, name)
        train = world_items(world[modality]["train"], modality)
        # Each stand-in starts from its own seed, not from whatever the phases before it left in torch's
        # generator (a cached language model would otherwise change every encoder's initialisation).
        torch.manual_seed(self.settings.stand_in_seed)
        if name == "speech":
            return self.pretrain_speech_encoder(world, train, processor, tokenizer)
        encoder = {
            "vision": lambda: stage0_encoders.vision_encoder(IMAGE_SIDE),
            "audio": stage0_encoders.audio_encoder,
            "point_cloud": stage0_encoders.point_cloud_encoder,
        }[name]()
        inputs = self.encoder_inputs(modality, train, processor)
        attributes = stage0_encoders.ATTRIBUTES[modality]
        motion = None
        if name == "vision" and self.settings.encoder_motion_videos:
            video_train = world_items(world["video"]["train"], "video")
            videos, labels = self.motion_inputs(video_train, processor)
            motion = stage0_encoders.motion_objective(
                encoder, videos, labels, self.settings.encoder_motion_videos, self.settings.stand_in_seed
            )
        heads, losses = stage0_encoders.pretrain_on_attributes(
            encoder,
            inputs,
            stage0_encoders.attribute_labels([i["attributes"] for i in train], modality),
            attributes,
            self.settings.encoders[name],
            self.settings.stand_in_seed,
            progress=self.progress(f"{name} encoder", self.settings.encoders[name]),
            **self.encoder_augmentation(modality, processor),
            augmented_fraction=self.settings.encoder_augmented_fraction.get(
                name, stage0_encoders.DEFAULT_AUGMENTED_FRACTION
            ),
            auxiliary=motion,
        )
        self.losses[f"stage 0: {name} encoder"] = losses
        # The encoder's own heads on every evaluation set: what the interface could read at best.
        diagnostics = {}
        for evaluation_set, items in self.stage0_evaluation_items(world, modality, train):
            accuracy = stage0_encoders.attribute_accuracy(
                encoder,
                heads,
                self.encoder_inputs(modality, items, processor),
                stage0_encoders.attribute_labels([i["attributes"] for i in items], modality),
            )
            diagnostics |= {f"encoder_{modality}_{evaluation_set}_{k}": v for k, v in accuracy.items()}
        if motion is not None:  # the motion heads on every evaluation set's videos
            for evaluation_set, items in self.stage0_evaluation_items(world, "video", video_train):
                videos, labels = self.motion_inputs(items, processor)
                accuracy = stage0_encoders.attribute_accuracy(
                    encoder, motion[0], videos.flatten(0, 1), labels
                )
                diagnostics |= {f"encoder_video_{evaluation_set}_{k}": v for k, v in accuracy.items()}
        return encoder, diagnostics

    @staticmethod
    def motion_inputs(items: list[dict], processor: XLLMProcessor) -> tuple[torch.Tensor, dict]:
        """The frames the video interface reads, (videos, frames, 3, H, W), and their direction and speed."""
        videos = processor.prepare_media("video", [item["media"] for item in items])["pixel_values_videos"]
        labels = stage0_encoders.attribute_labels([item["attributes"] for item in items], "video")
        return videos, {name: labels[name] for name in stage0_encoders.MOTION_ATTRIBUTES}

    @staticmethod
    def encoder_augmentation(modality: str, processor: XLLMProcessor) -> dict:
        """An augmentation that changes the held-out crossing's row attribute (colour, instrument)
        and the attributes it keeps, which are learned from augmented items only."""
        if modality == "audio":
            return {"augmentation": stage0_encoders.shuffled_frequencies, "invariant_attributes": ("speed",)}
        if modality == "point_cloud":
            augmentation = stage0_encoders.recoloured_point_clouds
        else:
            image_processor = processor.image_processor
            augmentation = functools.partial(
                stage0_encoders.recoloured_images,
                mean=tuple(image_processor.image_mean),
                std=tuple(image_processor.image_std),
            )
        kept = tuple(name for name in stage0_encoders.ATTRIBUTES[modality] if name != "colour")
        return {"augmentation": augmentation, "invariant_attributes": kept}

    def encoder_inputs(self, modality: str, items: list[dict], processor: XLLMProcessor) -> torch.Tensor:
        """What the encoder reads of each item: one input per item (a sound: its first window)."""
        inputs = processor.prepare_media(modality, [item["media"] for item in items], max_windows=1)
        media = inputs[model_modality(modality).input_name]
        return media[:, 0] if model_modality(modality).layout == "windows" else media

    def pretrain_speech_encoder(self, world, train, processor, tokenizer) -> tuple[PreTrainedModel, dict]:
        encoder = stage0_encoders.speech_encoder()
        features = self.speech_encoder_inputs(train, processor)
        transcripts = [tokenizer.convert_tokens_to_ids(item["transcript"].split()) for item in train]
        head, losses = stage0_encoders.pretrain_speech_recognition(
            encoder,
            features["input_features"],
            features["attention_mask"],
            transcripts,
            len(tokenizer),
            self.settings.speech_encoder,
            self.settings.stand_in_seed,
            progress=self.progress("speech encoder", self.settings.speech_encoder),
        )
        self.losses["stage 0: speech encoder"] = losses
        diagnostics = {"encoder_speech_final_ctc_loss": float(np.mean(losses[-10:]))}
        # The encoder's own recognition (its CTC head, greedy) on every evaluation set: the WER the
        # C-Former and the LLM start from.
        for evaluation_set, items in self.stage0_evaluation_items(world, "speech", train):
            inputs = self.speech_encoder_inputs(items, processor)
            recognised = stage0_encoders.ctc_greedy_transcripts(
                encoder, head, inputs["input_features"], inputs["attention_mask"]
            )
            transcripts = [" ".join(tokenizer.convert_ids_to_tokens(ids)) for ids in recognised]
            diagnostics[f"encoder_speech_{evaluation_set}_ctc_wer"] = speech_scores(transcripts, items)["wer"]
        return encoder, diagnostics

    def stage0_evaluation_items(self, world: dict, modality: str, train: list[dict]):
        """(evaluation set, its first `evaluation_items` items) for the stage-0 diagnostics; the
        training split's come from the already decoded `train`."""
        limit = self.settings.evaluation_items
        for evaluation_set, split in EVALUATION_SETS.items():
            if split == "train":
                yield evaluation_set, train[:limit]
            else:
                yield evaluation_set, world_items(world[modality][split], modality, limit=limit)

    @staticmethod
    def speech_encoder_inputs(items: list[dict], processor: XLLMProcessor) -> dict:
        return processor.speech_feature_extractor(
            [item["media"]["array"] for item in items],
            sampling_rate=16000,
            padding="longest",
            return_attention_mask=True,
            return_tensors="pt",
        )

    # ---------------------------------------------------------------- assembling the model

    def processor(self, tokenizer) -> XLLMProcessor:
        size = {"height": IMAGE_SIDE, "width": IMAGE_SIDE}
        # In id order: get_vocab() comes from a Rust hash map whose order changes from process to
        # process, and Q-Former token ids must not (or a cached rerun would give other numbers).
        token_ids = tokenizer.get_vocab()
        words = sorted(token_ids, key=token_ids.get)
        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [w for w in words if not w.startswith("<")]
        qformer_tokenizer = BertTokenizer(
            vocab={word: i for i, word in enumerate(dict.fromkeys(vocab))}, model_max_length=128
        )
        return XLLMProcessor(
            image_processor=BlipImageProcessor(size=size),
            video_processor=XLLMVideoProcessor(size=size, num_frames=VIDEO_FRAMES),
            tokenizer=tokenizer,
            qformer_tokenizer=qformer_tokenizer,
            speech_feature_extractor=XLLMSpeechFeatureExtractor(),
            audio_feature_extractor=XLLMAudioFeatureExtractor(window_seconds=AUDIO_WINDOW_SECONDS),
            point_cloud_feature_extractor=XLLMPointCloudFeatureExtractor(
                num_points=POINTS, in_channels=6, normalize_scale=False
            ),
            num_query_tokens={m: QUERIES[m] for m in QUERIES if m in self.settings.modalities},
            modalities=list(self.settings.modalities),
        )

    def interface_config(self, modality: str, kind: str, vocab_size: int) -> XLLMInterfaceConfig:
        common = dict(
            hidden_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=256,
            cross_attention_frequency=1,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            max_position_embeddings=256,
            vocab_size=vocab_size,
        )
        if modality == "speech":
            return XLLMInterfaceConfig(kind="cformer", num_query_tokens=1, instruction_aware=False, **common)
        if kind == "linear":
            common["linear_variant"] = self.settings.linear_variant
        elif modality == "video" and self.settings.video_time:
            common["frame_positions"] = VIDEO_FRAMES  # beyond the papers: see settings.video_time
        return XLLMInterfaceConfig(
            kind=kind, num_query_tokens=QUERIES[modality], instruction_aware=True, **common
        )

    def assemble(
        self,
        llm_folder: Path,
        encoder_folders: dict[str, Path],
        processor: XLLMProcessor,
        kind: str = "qformer",
    ) -> XLLMForConditionalGeneration:
        vocab_size = len(processor.qformer_tokenizer)
        interfaces = {m: self.interface_config(m, kind, vocab_size) for m in self.settings.modalities}
        torch.manual_seed(
            self.settings.seed
        )  # the same interfaces whether stage 0 ran or came from the cache
        model = XLLMForConditionalGeneration.from_pretrained_parts(
            llm_folder,
            {name: folder for name, folder in encoder_folders.items()},
            interfaces,
            tokenizer=processor.tokenizer,
            num_video_frames=VIDEO_FRAMES,
        )
        self.log(f"   trainable parameters: {model.trainable_parameter_report()}")
        return model

    # ---------------------------------------------------------------- stages 1-3

    def training_arguments(self, name: str, budget: StepBudget) -> TrainingArguments:
        return TrainingArguments(
            output_dir=str(self.output / "checkpoints" / name),
            max_steps=budget.steps,
            per_device_train_batch_size=budget.batch_size,
            learning_rate=budget.learning_rate,
            lr_scheduler_type="cosine",
            warmup_steps=max(1, budget.steps // 20),
            weight_decay=0.05,
            max_grad_norm=self.settings.max_grad_norm,
            logging_steps=max(1, budget.steps // 20),
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            dataloader_num_workers=0,
            seed=self.settings.seed,
            data_seed=self.settings.seed,
        )

    def record_losses(self, name: str, trainer) -> None:
        self.losses[name] = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]

    def interface_pretraining(self, model, processor, train: dict[str, list[dict]]) -> None:
        budget = self.settings.interface_pretraining
        if budget.steps == 0:
            self.log("   skipped (no steps in the budget)")
            return
        for modality in self.settings.pretrained_interfaces:
            if modality not in train:
                continue
            items = train[modality]
            text = "transcript" if modality == "speech" else "caption"
            examples = [{media_keywords()[modality]: item["media"], "response": item[text]} for item in items]
            collator = pretraining_collator(model, processor, modality)
            trainer = InterfacePretrainingTrainer(
                model,
                self.training_arguments(f"stage1-{modality}", budget),
                modality=modality,
                train_dataset=examples,
                data_collator=collator,
            )
            trainer.train()
            self.record_losses(f"stage 1: {modality}", trainer)
        if "video" in model.model.interfaces and "image" in model.model.interfaces:
            init_video_from_image(model)

    def encoder_features(self, model, processor, train: dict[str, list[dict]]) -> FeatureCaches:
        """Every training item's frozen-encoder features, under the keys `keyed_items` gives the items."""
        return FeatureCaches(
            MemoryFeatureCache(
                model,
                processor,
                modality,
                dict(zip(item_keys(modality, items), (item["media"] for item in items), strict=True)),
            )
            for modality, items in train.items()
        )

    def supervised_stage(
        self,
        name: str,
        trainer_class,
        model,
        processor,
        examples: list[dict],
        budget: StepBudget,
        feature_caches: FeatureCaches | None = None,
    ) -> None:
        if budget.steps == 0:
            self.log("   skipped (no steps in the budget)")
            return
        rng = np.random.default_rng([self.settings.seed, len(name)])
        examples = [examples[i] for i in rng.permutation(len(examples))]
        trainer = trainer_class(
            model,
            self.training_arguments(name.replace(" ", "-").replace(":", ""), budget),
            train_dataset=examples,
            data_collator=XLLMDataCollator(
                processor, speech_transcript_column="transcript", feature_caches=feature_caches
            ),
        )
        trainer.train()
        self.record_losses(name, trainer)

    # ---------------------------------------------------------------- evaluation

    def evaluate(
        self,
        model,
        processor,
        items: dict[str, dict[str, list[dict]]],
        world: dict,
        with_baseline: bool = True,
        captioning: bool = True,
    ) -> dict:
        """Evaluation set (EVALUATION_SETS) -> {captioning, speech, discrn} for `items` (evaluation set
        -> modality -> items). DisCRn runs on the test sets only, from their own pairs; the caption
        baseline reuses the captions of the captioning evaluation where it captioned the same item."""
        model.eval()
        results = {}
        for evaluation_set, by_modality in items.items():
            entry, captions = {"captioning": {}, "discrn": {}}, {}
            for modality, modality_items in by_modality.items() if captioning else ():
                if modality == "speech":
                    examples = [
                        chat_example("speech", item["media"], "transcribe the speech")
                        for item in modality_items
                    ]
                    predictions = greedy_answers(
                        model, processor, examples, max_new_tokens=16, desc=f"{evaluation_set} speech"
                    )
                    entry["speech"] = speech_scores(predictions, modality_items) | {
                        "cif_token_count": cif_token_counts(model, processor, modality_items)
                    }
                    continue
                instruction = CAPTION_INSTRUCTIONS[modality][0]
                examples = [chat_example(modality, item["media"], instruction) for item in modality_items]
                predictions = greedy_answers(
                    model, processor, examples, max_new_tokens=12, desc=f"{evaluation_set} caption {modality}"
                )
                captions |= {
                    (modality, item["id"]): p for item, p in zip(modality_items, predictions, strict=True)
                }
                entry["captioning"][modality] = captioning_scores(predictions, modality_items, modality) | {
                    "examples": [
                        {"reference": i["caption"], "prediction": p}
                        for i, p in list(zip(modality_items, predictions, strict=True))[:5]
                    ]
                }
            for pair_name, modalities in DISCRN_PAIRS.items():
                if evaluation_set not in DISCRN_SETS or not set(modalities) <= set(by_modality):
                    continue
                pairs = self.discrn_pairs(world[DISCRN_SETS[evaluation_set]], pair_name, modalities)
                examples = [comparison_example(p["question"], *p["media"]) for p in pairs]
                predictions = greedy_answers(
                    model, processor, examples, max_new_tokens=2, desc=f"{evaluation_set} DisCRn {pair_name}"
                )
                pair_entry = {"x-llm": discrn_scores(predictions, pairs), "chance": 0.5}
                if with_baseline:
                    pair_entry["caption_baseline"] = self.caption_baseline(model, processor, pairs, captions)
                entry["discrn"][pair_name] = pair_entry
            results[evaluation_set] = entry
        return results

    def discrn_pairs(self, discrn: dict, pair_name: str, modalities: tuple[str, str]) -> list[dict]:
        dataset = discrn[pair_name]
        limit = min(self.settings.discrn_pairs, len(dataset))
        rows = dataset.select(range(limit))
        pairs = []
        for row in rows:
            first = row["first_modality"]
            second = modalities[1] if first == modalities[0] else modalities[0]
            pairs.append(
                {
                    "question": row["question"],
                    "answer": row["answer"],
                    "modalities": (first, second),
                    "media": (
                        (first, world_media(row[first], first)),
                        (second, world_media(row[second], second)),
                    ),
                    "ids": (row[f"{first}_id"], row[f"{second}_id"]),
                }
            )
        return pairs

    def caption_baseline(self, model, processor, pairs: list[dict], captions: dict) -> dict:
        """The papers' caption baseline: each input replaced by the model's own caption of it (the
        interface and frozen LLM describe it alone), then the frozen LLM answers from the two
        captions, text only. `captions` holds the captions already generated, by (modality, id)."""
        inputs = {
            (modality, item_id): value
            for pair in pairs
            for (modality, value), item_id in zip(pair["media"], pair["ids"], strict=True)
        }
        missing = [key for key in inputs if key not in captions]
        examples = [
            chat_example(modality, inputs[modality, item_id], CAPTION_INSTRUCTIONS[modality][0])
            for modality, item_id in missing
        ]
        generated = greedy_answers(model, processor, examples, max_new_tokens=12, desc="baseline captions")
        captions = captions | dict(zip(missing, generated, strict=True))
        text_examples = []
        for pair in pairs:
            first, second = (
                captions[m, item_id] for m, item_id in zip(pair["modalities"], pair["ids"], strict=True)
            )
            text = f"{pair['question']} first : {first} second : {second}"
            text_examples.append(
                {"messages": [{"role": "user", "content": [{"type": "text", "text": text}]}]}
            )
        predictions = greedy_answers(
            model, processor, text_examples, max_new_tokens=2, desc="baseline answers"
        )
        return discrn_scores(predictions, pairs)

    # ---------------------------------------------------------------- the whole run

    def progress(self, name: str, budget: StepBudget):
        from tqdm.auto import tqdm

        bar = tqdm(total=budget.steps, desc=name, leave=False)

        def update(step: int, loss: float) -> None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}")
            if step + 1 == budget.steps:
                bar.close()

        return update

    def run(self) -> dict:
        """The whole run with deterministic kernels: same seed, machine and thread count, same
        report (with torch's defaults, two runs drifted apart at the 7th digit within 12 Q-Former
        steps and by whole points at the end)."""
        was_deterministic = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            return self.run_phases()
        finally:
            torch.use_deterministic_algorithms(was_deterministic)

    def run_phases(self) -> dict:
        s = self.settings
        torch.manual_seed(s.seed)
        world = self.phase("world", self.world)
        llm_folder = self.phase("stage 0: language model", self.language_model, world)
        processor = self.processor(world_tokenizer())
        encoder_folders = self.phase(
            "stage 0: encoders", self.encoders, world, processor, processor.tokenizer
        )
        model = self.phase("assemble", self.assemble, llm_folder, encoder_folders, processor)
        rng = np.random.default_rng([s.seed, 17])
        train, evaluation_items = self.phase("decode media", self.decoded_items, world)
        self.phase("stage 1: interface pre-training", self.interface_pretraining, model, processor, train)
        feature_caches, stage_items = None, train
        if s.cached_encoder_features:  # stages 2 and 3 read the features, their examples the items' keys
            feature_caches = self.phase("encoder features", self.encoder_features, model, processor, train)
            stage_items = keyed_items(train)
        # The data of stages 2 and 3 per modality, drawn once: the equal-budget ablation trains on it too.
        captioning = {m: caption_examples(items, m, rng) for m, items in stage_items.items()}
        instructions = {m: instruction_examples(items, m) for m, items in stage_items.items()}
        for m, items in stage_items.items():
            instructions[m] += same_modality_comparisons(items, m, s.comparisons_per_modality, rng)
        self.train_stages_2_and_3(
            model, processor, captioning, instructions, s.alignment, s.instruction_tuning, feature_caches
        )
        results = self.phase("evaluate", self.evaluate, model, processor, evaluation_items, world)
        if s.ablation != "none":
            results["ablation"] = self.ablation(  # timed phase by phase inside
                llm_folder,
                encoder_folders,
                processor,
                train,
                captioning,
                instructions,
                evaluation_items,
                world,
            )
        model_folder = self.output / "model"
        if model_folder.exists():
            shutil.rmtree(model_folder)
        model.save_pretrained(model_folder)
        processor.save_pretrained(model_folder)
        return {
            "settings": asdict(s),
            "threads": torch.get_num_threads(),
            "timings_seconds": self.timings,
            "diagnostics": self.diagnostics,
            "results": results,
            "losses": self.losses,
            "model": str(model_folder),
        }

    def decoded_items(self, world: dict) -> tuple[dict[str, list[dict]], dict[str, dict[str, list[dict]]]]:
        """The train items of every modality, and the items of every evaluation set (the training
        split's are its first `train_evaluation_items`)."""
        s = self.settings
        train = {m: world_items(world[m]["train"], m) for m in s.modalities}
        evaluation = {"train": {m: items[: s.train_evaluation_items] for m, items in train.items()}}
        for name, split in TEST_SETS.items():
            evaluation[name] = {
                m: world_items(world[m][split], m, limit=s.evaluation_items) for m in s.modalities
            }
        return train, evaluation

    def train_stages_2_and_3(
        self,
        model,
        processor,
        captioning: dict[str, list[dict]],
        instructions: dict[str, list[dict]],
        alignment: StepBudget,
        instruction_tuning: StepBudget,
        feature_caches: FeatureCaches | None = None,
        prefix: str = "",
    ) -> None:
        """Stage 2 (alignment: captions, transcripts) then stage 3 (instruction tuning), each on the
        examples of every modality of the dicts, shuffled together; with `feature_caches`, examples
        name their media by key (`keyed_items`)."""
        for name, trainer_class, examples, budget in (
            ("stage 2: alignment", AlignmentTrainer, captioning, alignment),
            ("stage 3: instruction tuning", InstructionTuningTrainer, instructions, instruction_tuning),
        ):
            name = prefix + name
            examples = [e for modality_examples in examples.values() for e in modality_examples]
            self.phase(
                name,
                self.supervised_stage,
                name,
                trainer_class,
                model,
                processor,
                examples,
                budget,
                feature_caches,
            )

    def ablation(
        self, llm_folder, encoder_folders, processor, train, captioning, instructions, evaluation_items, world
    ) -> dict:
        """X-InstructBLIP's ablation: linear interfaces (`settings.linear_variant`; pooled encoder
        features -> fixed tokens) in place of the Q-Formers, evaluated on DisCRn of both test sets.
        `settings.ablation` says how it trains (see settings.ABLATIONS): by alignment alone on a
        smaller budget (the default run's time), or at an equal budget, on the same examples."""
        s = self.settings
        modalities = [m for m in captioning if m != "speech"]
        model = self.phase(
            "ablation: assemble", self.assemble, llm_folder, encoder_folders, processor, "linear"
        )
        if s.ablation == "equal_budget":
            budgets = (s.alignment, s.instruction_tuning)
        else:
            budgets = (s.ablation_alignment, StepBudget(steps=0, batch_size=1, learning_rate=0.0))
        feature_caches = None
        if s.cached_encoder_features:  # its interfaces may read another encoder layer: features of its own
            feature_caches = self.phase(
                "ablation: encoder features",
                self.encoder_features,
                model,
                processor,
                {m: train[m] for m in modalities},
            )
        self.train_stages_2_and_3(
            model,
            processor,
            {m: captioning[m] for m in modalities},
            {m: instructions[m] for m in modalities},
            *budgets,
            feature_caches,
            prefix="ablation: ",
        )
        results = self.phase(
            "ablation: evaluate",
            self.evaluate,
            model,
            processor,
            {name: {m: evaluation_items[name][m] for m in modalities} for name in TEST_SETS},
            world,
            with_baseline=False,
            captioning=False,
        )
        return {
            "setting": s.ablation,
            "linear_variant": s.linear_variant,
            "steps": {
                "stage 2: alignment": budgets[0].steps,
                "stage 3: instruction tuning": budgets[1].steps,
            },
            **{name: results[name]["discrn"] for name in TEST_SETS},
        }


def item_keys(modality: str, items: list[dict]) -> list[str]:
    """The name of each training item's features in `Demo.encoder_features`."""
    return [f"{modality}:{index}" for index in range(len(items))]


def keyed_items(train: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """The training items with their media replaced by their key, for examples that read cached features."""
    return {
        modality: [dict(item, media=key) for item, key in zip(items, item_keys(modality, items), strict=True)]
        for modality, items in train.items()
    }


__all__ = ["Demo"]
