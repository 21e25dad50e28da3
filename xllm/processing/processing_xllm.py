"""One processor for every modality of X-LLM.

Text is tokenized with each media placeholder (`<image>`, `<video>`, ...) as a single token, then
every placeholder token is expanded, at the token level, to the number of embeddings its interface
produces. Expanding token ids (not text) keeps character offsets pointing into the original text,
so assistant masks computed from the chat template stay aligned. The instruction that
instruction-aware Q-Formers read is tokenized separately with the Q-Former's tokenizer.
"""

import re
from importlib import resources

import torch
from transformers import BatchFeature
from transformers.processing_utils import ProcessorMixin

from .audio_loading_xllm import load_audio
from .feature_extraction_speech_xllm import XLLMSpeechFeatureExtractor

# Placeholder written in the text for each modality, and the keyword its media come under.
PLACEHOLDERS = {"image": "<image>", "video": "<video>", "speech": "<speech>"}
MEDIA_KEYWORDS = {"image": "images", "video": "videos", "speech": "speech"}
IGNORE_INDEX = -100


def default_chat_template() -> str:
    """The X-LLM prompt template (`Question: ...\\n Answer: ...`) shipped with the package."""
    return resources.files(__package__).joinpath("chat_template_xllm.jinja").read_text()


def flatten_media(media, name: str) -> list:
    """Media come flat (one list for the batch) or nested (one list per sample); return them flat."""
    if media is None:
        return []
    if not isinstance(media, (list, tuple)):
        return [media]
    flat = []
    for item in media:
        if isinstance(item, (list, tuple)) and not (
            name == "videos" and item and not isinstance(item[0], str)
        ):
            flat.extend(item)
        else:
            flat.append(item)
    return flat


class XLLMProcessor(ProcessorMixin):
    r"""
    Tokenizer, Q-Former tokenizer, image processor and video processor of an X-LLM model.

    Args:
        image_processor: any image processor (BLIP's for the published systems).
        video_processor ([`XLLMVideoProcessor`]): samples `num_frames` frames uniformly.
        tokenizer: the LLM's tokenizer. Missing placeholder tokens are added as special tokens.
        qformer_tokenizer: the Q-Former's tokenizer (BERT WordPiece, as BLIP-2).
        speech_feature_extractor: the speech encoder's own feature extractor (default: 80-bin
            Kaldi fbank for the X-LLM conformer; Whisper's or Wav2Vec2's work too). Each speech
            input keeps a single `<speech>` placeholder: CIF decides its length inside the model.
        chat_template (`str`, *optional*): defaults to the X-LLM prompt `Question: ...\n Answer: `.
        num_query_tokens (`dict[str, int]`): embeddings per item of each fixed-length interface
            (per frame for video), copied from the model config; the processor never imports the model.
        instruction_max_length (`int`): the Q-Former instruction is left-truncated to this many tokens.
        padding_side (`str`): `"left"` (for generation) or `"right"`.
    """

    def __init__(
        self,
        image_processor=None,
        video_processor=None,
        tokenizer=None,
        qformer_tokenizer=None,
        speech_feature_extractor=None,
        chat_template: str | None = None,
        num_query_tokens: dict[str, int] | None = None,
        instruction_max_length: int = 128,
        padding_side: str = "left",
        **kwargs,
    ):
        if padding_side not in ("left", "right"):
            raise ValueError(f"`padding_side` must be 'left' or 'right', got {padding_side!r}.")
        missing = [token for token in PLACEHOLDERS.values() if token not in tokenizer.get_vocab()]
        if missing:
            tokenizer.add_special_tokens(
                {"additional_special_tokens": missing}, replace_extra_special_tokens=False
            )
        if qformer_tokenizer is not None:
            qformer_tokenizer.truncation_side = "left"  # long instructions keep their end (X-InstructBLIP)
        self.num_query_tokens = dict(num_query_tokens or {})
        self.instruction_max_length = instruction_max_length
        self.padding_side = padding_side
        if chat_template is None:
            chat_template = default_chat_template()
        if speech_feature_extractor is None:
            speech_feature_extractor = XLLMSpeechFeatureExtractor()
        super().__init__(
            image_processor,
            video_processor,
            tokenizer,
            qformer_tokenizer,
            speech_feature_extractor,
            chat_template=chat_template,
        )
        self.placeholder_ids = {
            m: tokenizer.convert_tokens_to_ids(token) for m, token in PLACEHOLDERS.items()
        }

    def __call__(
        self,
        images=None,
        text: str | list[str] | None = None,
        videos=None,
        audio=None,
        *,
        speech=None,
        speech_transcripts: list[str] | None = None,
        instructions: str | list[str] | None = None,
        return_tensors: str | None = "pt",
        padding_side: str | None = None,
        return_offsets_mapping: bool = False,
        add_special_tokens: bool = True,
        num_frames: int | None = None,
        **kwargs,
    ) -> BatchFeature:
        """Tokenize `text` and preprocess its media; each placeholder gets its interface's length.

        `images` / `videos` are flat (in the order their placeholders appear in the batch) or one
        list per sample. `instructions` (one per sample) is what instruction-aware Q-Formers read;
        by default the text with its placeholders removed. `speech` items are waveforms, paths or
        `datasets.Audio` values; `speech_transcripts` (training) give CIF its target lengths.
        """
        if text is None:
            raise ValueError(
                "`text` is required: it says where each media input goes (e.g. '<image> Describe it.')."
            )
        texts = [text] if isinstance(text, str) else list(text)
        if not all(isinstance(sample, str) for sample in texts):
            raise TypeError(f"`text` must be a string or a list of strings, got {type(text).__name__}.")
        media = {
            "image": flatten_media(images, "images"),
            "video": flatten_media(videos, "videos"),
            "speech": flatten_media(speech, "speech"),
        }
        self._check_media_counts(texts, media)

        data = {}
        tokens_per_item = {}
        if media["image"]:
            data["pixel_values"] = self.image_processor(media["image"], return_tensors="pt")["pixel_values"]
            tokens_per_item["image"] = self._queries("image")
        if media["video"]:
            frames_kwargs = {} if num_frames is None else {"num_frames": num_frames}
            pixel_values_videos = self.video_processor(media["video"], return_tensors="pt", **frames_kwargs)[
                "pixel_values_videos"
            ]
            data["pixel_values_videos"] = pixel_values_videos  # (videos, frames, C, H, W)
            tokens_per_item["video"] = self._queries("video") * pixel_values_videos.shape[1]
        if media["speech"]:
            data.update(self._speech_features(media["speech"], speech_transcripts))

        encoding = self.tokenizer(
            texts, add_special_tokens=add_special_tokens, return_offsets_mapping=return_offsets_mapping
        )
        expanded = [
            self._expand_placeholders(encoding, index, tokens_per_item, return_offsets_mapping)
            for index in range(len(texts))
        ]
        data.update(self._pad(expanded, padding_side or self.padding_side))
        data.update(self._tokenize_instructions(texts, instructions))
        return BatchFeature(data, tensor_type=return_tensors, skip_tensor_conversion=["offset_mapping"])

    def _speech_features(self, speech: list, transcripts: list[str] | None) -> dict:
        extractor = self.speech_feature_extractor
        waveforms = [
            load_audio(item, target_sampling_rate=extractor.sampling_rate, name=f"speech[{index}]")
            for index, item in enumerate(speech)
        ]
        # Whisper-style extractors define a fixed window (`n_samples`, 30 s) that their encoder requires.
        padding = "max_length" if hasattr(extractor, "n_samples") else "longest"
        features = extractor(
            waveforms,
            sampling_rate=extractor.sampling_rate,
            padding=padding,
            return_attention_mask=True,
            return_tensors="pt",
        )
        main_input = "input_features" if "input_features" in features else "input_values"
        data = {"speech_features": features[main_input], "speech_attention_mask": features["attention_mask"]}
        if transcripts is not None:
            if len(transcripts) != len(speech):
                raise ValueError(
                    f"`speech_transcripts` must have one entry per speech input: got {len(transcripts)} for "
                    f"{len(speech)}."
                )
            token_counts = [
                len(self.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in transcripts
            ]
            data["speech_target_lengths"] = torch.tensor(token_counts)
        return data

    def _queries(self, modality: str) -> int:
        if modality not in self.num_query_tokens:
            raise ValueError(
                f"The processor does not know how many tokens a {modality} input takes: `num_query_tokens` has no "
                f"{modality!r} entry (it has {sorted(self.num_query_tokens)})."
            )
        return self.num_query_tokens[modality]

    @staticmethod
    def _check_media_counts(texts: list[str], media: dict[str, list]) -> None:
        for modality, items in media.items():
            placeholder = PLACEHOLDERS[modality]
            count = sum(sample.count(placeholder) for sample in texts)
            if count != len(items):
                keyword = MEDIA_KEYWORDS[modality]
                raise ValueError(
                    f"The text has {count} {placeholder} placeholder(s) but {len(items)} {modality} input(s) were "
                    f"given in `{keyword}`; write one {placeholder} per {modality}."
                )

    def _expand_placeholders(
        self, encoding, index: int, tokens_per_item: dict[str, int], with_offsets: bool
    ) -> dict[str, list]:
        """Repeat each placeholder token as many times as its interface has outputs."""
        repeats = {self.placeholder_ids[m]: n for m, n in tokens_per_item.items()}
        input_ids, offsets = [], []
        source_offsets = encoding["offset_mapping"][index] if with_offsets else None
        for position, token_id in enumerate(encoding["input_ids"][index]):
            count = repeats.get(token_id, 1)
            input_ids.extend([token_id] * count)
            if with_offsets:
                offsets.extend([tuple(source_offsets[position])] * count)
        sample = {"input_ids": input_ids}
        if with_offsets:
            sample["offset_mapping"] = offsets
        return sample

    def _pad(self, samples: list[dict[str, list]], padding_side: str) -> dict:
        if padding_side not in ("left", "right"):
            raise ValueError(f"`padding_side` must be 'left' or 'right', got {padding_side!r}.")
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.tokenizer.eos_token_id
        longest = max(len(sample["input_ids"]) for sample in samples)
        batch = {"input_ids": [], "attention_mask": []}
        with_offsets = "offset_mapping" in samples[0]
        if with_offsets:
            batch["offset_mapping"] = []
        for sample in samples:
            padding = longest - len(sample["input_ids"])

            def pad(values: list, fill, padding=padding):
                return [fill] * padding + values if padding_side == "left" else values + [fill] * padding

            batch["input_ids"].append(pad(sample["input_ids"], pad_id))
            batch["attention_mask"].append(pad([1] * len(sample["input_ids"]), 0))
            if with_offsets:
                batch["offset_mapping"].append(pad(sample["offset_mapping"], (0, 0)))
        return batch

    def _tokenize_instructions(self, texts: list[str], instructions: str | list[str] | None) -> dict:
        if instructions is None:
            pattern = "|".join(re.escape(token) for token in PLACEHOLDERS.values())
            instructions = [" ".join(re.sub(pattern, " ", sample).split()) for sample in texts]
        elif isinstance(instructions, str):
            instructions = [instructions]
        if len(instructions) != len(texts):
            raise ValueError(
                f"`instructions` must have one entry per sample: got {len(instructions)} for {len(texts)} texts."
            )
        encoding = self.qformer_tokenizer(
            list(instructions),
            padding="longest",
            truncation=True,
            max_length=self.instruction_max_length,
            return_tensors="pt",
        )
        return {
            "qformer_input_ids": encoding["input_ids"],
            "qformer_attention_mask": encoding["attention_mask"],
        }

    def _multimodal_inputs_from_conversations(
        self, conversations, audio_loading_params, load_audio_from_video=False
    ):
        images, videos, audios, extra = super()._multimodal_inputs_from_conversations(
            conversations, audio_loading_params, load_audio_from_video
        )
        extra["instructions"] = [conversation_instruction(conversation) for conversation in conversations]
        speech = [media_of(conversation, "speech") for conversation in conversations]
        if any(speech):
            extra["speech"] = [item for items in speech for item in items]
        return images, videos, audios, extra

    def apply_chat_template(self, conversation, chat_template: str | None = None, **kwargs):
        """`ProcessorMixin.apply_chat_template`, plus `labels` when `return_assistant_tokens_mask=True`:
        the assistant tokens, everything else (prompt, placeholders, padding) set to -100."""
        outputs = super().apply_chat_template(conversation, chat_template=chat_template, **kwargs)
        if (
            kwargs.get("return_assistant_tokens_mask")
            and kwargs.get("return_dict")
            and kwargs.get("tokenize")
        ):
            input_ids = torch.as_tensor(outputs["input_ids"])
            assistant = torch.as_tensor(outputs["assistant_masks"]).bool()
            outputs["labels"] = input_ids.masked_fill(~assistant, IGNORE_INDEX)
        return outputs

    @staticmethod
    def get_possibly_dynamic_module(module_name: str):
        """Sub-processor class by name, as saved in `processor_config.json`. Ours are resolved here:
        transformers' own lookup breaks on them (it expects every registered video processor to be a
        class, but `AutoVideoProcessor.register` stores a dict)."""
        if module_name == XLLMSpeechFeatureExtractor.__name__:
            return XLLMSpeechFeatureExtractor
        return ProcessorMixin.get_possibly_dynamic_module(module_name)

    @property
    def model_input_names(self) -> list[str]:
        return [
            "input_ids",
            "attention_mask",
            "pixel_values",
            "pixel_values_videos",
            "qformer_input_ids",
            "qformer_attention_mask",
            "speech_features",
            "speech_attention_mask",
        ]


def media_of(conversation: list[dict], content_type: str) -> list:
    """The media of one content type in a conversation, in order (`{"type": "speech", "path": ...}`)."""
    items = []
    for message in conversation:
        content = message.get("content") or []
        if isinstance(content, str):
            continue
        for part in content:
            if part.get("type") == content_type:
                items.extend(part[key] for key in (content_type, "audio", "path", "url") if key in part)
    return items


def conversation_instruction(conversation: list[dict]) -> str:
    """What the Q-Former reads: the text of the user turns (left truncation keeps the latest)."""
    texts = []
    for message in conversation:
        if message.get("role") != "user":
            continue
        content = message.get("content") or []
        if isinstance(content, str):
            texts.append(content)
        else:
            texts.extend(part["text"] for part in content if part.get("type") == "text")
    return " ".join(" ".join(texts).split())


__all__ = ["XLLMProcessor"]
