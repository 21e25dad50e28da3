"""`xllm demo`: the whole method on the synthetic world, on a CPU, in minutes.

Phases, each timed:
  world      build the synthetic world (cached)
  stage 0    the stand-ins for pretrained models: word-level tokenizer + tiny Llama trained on the
             world's text; one small encoder per modality pre-trained on the world (cached)
  assemble   `XLLMForConditionalGeneration.from_pretrained_parts`: frozen LLM and encoders, new
             interfaces (Q-Formers; the C-Former for speech)
  stage 1    interface pre-training: BLIP-2 objectives for Q-Formers, CIF speech recognition for
             the C-Former (no LLM)
  stage 2    alignment: every interface against the frozen LLM, captioning / transcription
  stage 3    instruction tuning: every (instruction, answer) pair of every modality, mixed
  evaluate   captioning + attribute accuracy, speech WER, DisCRn-style cross-modal accuracy next
             to chance, the caption baseline and the linear-interface ablation
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
from ..trainers.stage1_interface_pretraining import pretraining_collator
from ..world import build_world, load_world, text_comparisons
from ..world.build import WorldSizes
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
from .evaluation import captioning_scores, discrn_scores, greedy_answers, speech_scores
from .language_model import language_examples, text_comparison_accuracy, train_language_model, world_tokenizer
from .settings import DemoSettings, StepBudget

# Queries per image / frame / audio window / cloud. Video has the image interface's shape, so that it
# can start from the trained image interface (X-LLM); two frames show where and how fast a shape moves.
QUERIES = {"image": 8, "video": 8, "audio": 6, "point_cloud": 6}
VIDEO_FRAMES = 2
IMAGE_SIDE = 64
AUDIO_WINDOW_SECONDS = 1.6  # one window covers a 1.5 s sound
POINTS = 512
# X-LLM pre-trains its image Q-Former (BLIP-2 stage 1) and its C-Former (speech recognition); video
# starts from the trained image interface; audio and 3D interfaces start at stage 2 here.
STAGE1_MODALITIES = ("image", "speech")
DISCRN_PAIRS = {"image_point_cloud": ("image", "point_cloud"), "audio_video": ("audio", "video")}


def stable_digest(settings: dict) -> str:
    """A short name for a set of settings, the same in every process (unlike `hash`)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


class Demo:
    """One run of the demo; `run()` returns the report (also written to `output_dir`)."""

    def __init__(self, settings: DemoSettings, output_dir: str | Path, log: Callable[[str], None] = print):
        self.settings = settings
        self.output = Path(output_dir)
        self.cache = self.output / "cache"
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
            validation=min(50, s.world_test),
            discrn_pairs=s.discrn_pairs,
            video_frames=8,
            points=POINTS,
        )
        folder = self.cache / f"world-seed{s.seed}-{stable_digest(asdict(sizes))}"
        if (folder / "world.json").exists():
            self.log(f"   cached: {folder}")
            return load_world(folder)
        return build_world(folder, seed=s.seed, sizes=sizes)

    def stage0_folder(self) -> Path:
        s = self.settings
        key = stable_digest(
            {
                "seed": s.seed,
                "train": s.world_train,
                "lm": asdict(s.language_model),
                "enc": {name: asdict(budget) for name, budget in s.encoders.items()},
                "speech": asdict(s.speech_encoder),
                "modalities": s.modalities,
                "comparisons": s.text_comparisons,
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
        comparisons = text_comparisons(self.settings.text_comparisons, seed=self.settings.seed)
        modalities = {m: world[m] for m in self.settings.modalities}
        examples = language_examples(modalities, comparisons, seed=self.settings.seed)
        model, losses = train_language_model(
            tokenizer,
            examples,
            self.settings.language_model,
            self.settings.seed,
            progress=self.progress("LLM", self.settings.language_model),
        )
        self.losses["stage 0: language model"] = losses
        diagnostics = {}
        for pair_name, modalities_of_pair in DISCRN_PAIRS.items():
            if set(modalities_of_pair) <= set(self.settings.modalities):
                rows = world["discrn"][pair_name].select_columns(
                    ["question", "answer", "first_caption", "second_caption"]
                )
                diagnostics[f"llm_text_comparison_{pair_name}"] = text_comparison_accuracy(
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
        test = world_items(world[modality]["test"], modality)
        if name == "speech":
            return self.pretrain_speech_encoder(train, test, processor, tokenizer)
        encoder = {
            "vision": lambda: stage0_encoders.vision_encoder(IMAGE_SIDE),
            "audio": stage0_encoders.audio_encoder,
            "point_cloud": stage0_encoders.point_cloud_encoder,
        }[name]()
        inputs, test_inputs = (self.encoder_inputs(modality, items, processor) for items in (train, test))
        attributes = stage0_encoders.ATTRIBUTES[modality]
        heads, losses = stage0_encoders.pretrain_on_attributes(
            encoder,
            inputs,
            stage0_encoders.attribute_labels([i["attributes"] for i in train], modality),
            attributes,
            self.settings.encoders[name],
            self.settings.seed,
            progress=self.progress(f"{name} encoder", self.settings.encoders[name]),
            **self.encoder_augmentation(modality, processor),
        )
        self.losses[f"stage 0: {name} encoder"] = losses
        accuracy = stage0_encoders.attribute_accuracy(
            encoder,
            heads,
            test_inputs,
            stage0_encoders.attribute_labels([i["attributes"] for i in test], modality),
        )
        return encoder, {f"encoder_{modality}_test_{k}": v for k, v in accuracy.items()}

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

    def pretrain_speech_encoder(self, train, test, processor, tokenizer) -> tuple[PreTrainedModel, dict]:
        encoder = stage0_encoders.speech_encoder()
        features = processor.speech_feature_extractor(
            [item["media"]["array"] for item in train],
            sampling_rate=16000,
            padding="longest",
            return_attention_mask=True,
            return_tensors="pt",
        )
        transcripts = [tokenizer.convert_tokens_to_ids(item["transcript"].split()) for item in train]
        losses = stage0_encoders.pretrain_speech_recognition(
            encoder,
            features["input_features"],
            features["attention_mask"],
            transcripts,
            len(tokenizer),
            self.settings.speech_encoder,
            self.settings.seed,
            progress=self.progress("speech encoder", self.settings.speech_encoder),
        )
        self.losses["stage 0: speech encoder"] = losses
        return encoder, {"encoder_speech_final_ctc_loss": float(np.mean(losses[-10:]))}

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
        for modality in STAGE1_MODALITIES:
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

    def supervised_stage(
        self, name: str, trainer_class, model, processor, examples: list[dict], budget: StepBudget
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
            data_collator=XLLMDataCollator(processor, speech_transcript_column="transcript"),
        )
        trainer.train()
        self.record_losses(name, trainer)

    # ---------------------------------------------------------------- evaluation

    def evaluate(
        self, model, processor, test: dict[str, list[dict]], world: dict, with_baseline: bool = True
    ) -> dict:
        model.eval()
        results = {"captioning": {}, "discrn": {}}
        captions = {}
        for modality, items in test.items():
            if modality == "speech":
                examples = [chat_example("speech", item["media"], "transcribe the speech") for item in items]
                predictions = greedy_answers(model, processor, examples, max_new_tokens=16, desc="speech")
                results["speech"] = speech_scores(predictions, items)
                continue
            examples = [
                chat_example(modality, item["media"], CAPTION_INSTRUCTIONS[modality][0]) for item in items
            ]
            predictions = greedy_answers(
                model, processor, examples, max_new_tokens=12, desc=f"caption {modality}"
            )
            captions.update({item["id"]: p for item, p in zip(items, predictions, strict=True)})
            results["captioning"][modality] = captioning_scores(predictions, items, modality) | {
                "examples": [
                    {"reference": i["caption"], "prediction": p}
                    for i, p in list(zip(items, predictions, strict=True))[:5]
                ]
            }
        for pair_name, modalities in DISCRN_PAIRS.items():
            if not set(modalities) <= set(test):
                continue
            pairs = self.discrn_pairs(world, pair_name, modalities)
            examples = [comparison_example(p["question"], *p["media"]) for p in pairs]
            predictions = greedy_answers(
                model, processor, examples, max_new_tokens=2, desc=f"DisCRn {pair_name}"
            )
            entry = {"x-llm": discrn_scores(predictions, pairs), "chance": 0.5}
            if with_baseline:
                entry["caption_baseline"] = self.caption_baseline(model, processor, pairs, modalities)
            results["discrn"][pair_name] = entry
        return results

    def discrn_pairs(self, world: dict, pair_name: str, modalities: tuple[str, str]) -> list[dict]:
        dataset = world["discrn"][pair_name]
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

    def caption_baseline(self, model, processor, pairs: list[dict], modalities) -> dict:
        """Each input replaced by the model's own caption of it; then the LLM compares the texts."""
        media = [m for pair in pairs for m in pair["media"]]
        examples = [
            chat_example(modality, value, CAPTION_INSTRUCTIONS[modality][0]) for modality, value in media
        ]
        captions = greedy_answers(model, processor, examples, max_new_tokens=12, desc="baseline captions")
        text_examples = [
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "text",
                                "text": f"{pair['question']} first : {captions[2 * i]} second : {captions[2 * i + 1]}",
                            }
                        ],
                    }
                ]
            }
            for i, pair in enumerate(pairs)
        ]
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
        train = self.phase(
            "decode media", lambda: {m: world_items(world[m]["train"], m) for m in s.modalities}
        )
        test = {m: world_items(world[m]["test"], m, limit=s.evaluation_items) for m in s.modalities}
        self.phase("stage 1: interface pre-training", self.interface_pretraining, model, processor, train)
        captioning = [e for m, items in train.items() for e in caption_examples(items, m, rng)]
        self.phase(
            "stage 2: alignment",
            self.supervised_stage,
            "stage 2: alignment",
            AlignmentTrainer,
            model,
            processor,
            captioning,
            s.alignment,
        )
        instructions = [e for m, items in train.items() for e in instruction_examples(items, m)]
        instructions += [
            e
            for m, items in train.items()
            for e in same_modality_comparisons(items, m, s.comparisons_per_modality, rng)
        ]
        self.phase(
            "stage 3: instruction tuning",
            self.supervised_stage,
            "stage 3: instruction tuning",
            InstructionTuningTrainer,
            model,
            processor,
            instructions,
            s.instruction_tuning,
        )
        results = self.phase("evaluate", self.evaluate, model, processor, test, world)
        if s.run_ablation:
            results["ablation"] = self.phase(
                "ablation: linear interfaces",
                self.ablation,
                llm_folder,
                encoder_folders,
                processor,
                train,
                test,
                world,
            )
        model_folder = self.output / "model"
        if model_folder.exists():
            shutil.rmtree(model_folder)
        model.save_pretrained(model_folder)
        processor.save_pretrained(model_folder)
        return {
            "settings": asdict(s),
            "timings_seconds": self.timings,
            "diagnostics": self.diagnostics,
            "results": results,
            "losses": self.losses,
            "model": str(model_folder),
        }

    def ablation(self, llm_folder, encoder_folders, processor, train, test, world) -> dict:
        """The paper's ablation: linear interfaces (pooled encoder features -> fixed tokens) in
        place of the Q-Formers, trained by alignment only, on a smaller budget."""
        modalities = [m for m in train if m != "speech"]
        model = self.assemble(llm_folder, encoder_folders, processor, kind="linear")
        rng = np.random.default_rng([self.settings.seed, 23])
        captioning = [e for m in modalities for e in caption_examples(train[m], m, rng)]
        self.supervised_stage(
            "ablation: alignment",
            AlignmentTrainer,
            model,
            processor,
            captioning,
            self.settings.ablation_alignment,
        )
        return self.evaluate(model, processor, {m: test[m] for m in modalities}, world, with_baseline=False)[
            "discrn"
        ]


__all__ = ["Demo"]
