"""One processor for every modality of X-LLM.

Text is tokenized with each media placeholder (`<image>`, `<video>`, ...) as a single token, then
every placeholder token is expanded, at the token level, to the number of embeddings its interface
produces. Expanding token ids (not text) keeps character offsets pointing into the original text,
so assistant masks computed from the chat template stay aligned. The instruction that
instruction-aware Q-Formers read is tokenized separately with the Q-Former's tokenizer.
"""

import difflib
import os
import re
import warnings
from importlib import resources

import numpy as np
import torch
from transformers import BatchFeature
from transformers.image_utils import load_image
from transformers.processing_utils import ProcessorMixin

from .audio_loading_xllm import load_audio
from .feature_extraction_audio_xllm import XLLMAudioFeatureExtractor
from .feature_extraction_point_cloud_xllm import XLLMPointCloudFeatureExtractor
from .feature_extraction_speech_xllm import XLLMSpeechFeatureExtractor

# Placeholder written in the text for each modality, and the keyword its media come under.
PLACEHOLDERS = {
    "image": "<image>",
    "video": "<video>",
    "speech": "<speech>",
    "audio": "<audio>",
    "point_cloud": "<point_cloud>",
}
MEDIA_KEYWORDS = {
    "image": "images",
    "video": "videos",
    "speech": "speech",
    "audio": "audio",
    "point_cloud": "point_clouds",
}
# Keys of a chat content part that may hold its media item.
CHAT_MEDIA_KEYS = {
    "speech": ("speech", "audio", "path", "url"),
    "audio": ("audio", "path", "url"),
    "point_cloud": ("point_cloud", "path", "url"),
}
# Feature extractors of this package that the processor resolves itself when loading.
OWN_FEATURE_EXTRACTORS = {
    cls.__name__: cls
    for cls in (XLLMSpeechFeatureExtractor, XLLMAudioFeatureExtractor, XLLMPointCloudFeatureExtractor)
}
# Kaldi fbank frame shift of transformers' AST feature extractor: `max_length` frames span max_length / 100 s.
AST_FRAMES_PER_SECOND = 100
IGNORE_INDEX = -100
# Keywords of `XLLMProcessor.__call__` that a misspelling (`image=`) must not silently drop.
CALL_KEYWORDS = ("text", *MEDIA_KEYWORDS.values(), "instructions", "speech_transcripts")
CHAT_CONTENT_TYPES = ("text", *PLACEHOLDERS)


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
        if isinstance(item, (list, tuple)) and not (name == "videos" and is_frame_list(item)):
            flat.extend(item)
        else:
            flat.append(item)
    return flat


def is_frame_list(item: list | tuple) -> bool:
    """A list that is one video given as frames (images or (H, W, C) arrays), not a list of videos
    (paths, decoders or (frames, H, W, C) arrays)."""
    first = item[0] if item else None
    return first is not None and not isinstance(first, str) and getattr(first, "ndim", 3) == 3


class XLLMProcessor(ProcessorMixin):
    r"""
    Tokenizers and per-modality processors of an X-LLM model.

    Args:
        image_processor: any image processor (BLIP's for the published systems).
        video_processor ([`XLLMVideoProcessor`]): samples `num_frames` frames uniformly.
        tokenizer: the LLM's tokenizer. Missing placeholder tokens are added as special tokens.
        qformer_tokenizer: the Q-Former's tokenizer (BERT WordPiece, as BLIP-2).
        speech_feature_extractor: the speech encoder's own feature extractor (default: 80-bin
            Kaldi fbank for the X-LLM conformer; Whisper's or Wav2Vec2's work too). Each speech
            input keeps a single `<speech>` placeholder: CIF decides its length inside the model.
        audio_feature_extractor: the audio encoder's feature extractor (default: BEATs fbank cut into
            5.12 s windows). Extractors that do not window themselves (AST, Whisper) get the waveform cut
            into windows of `audio_window_seconds`, one call per window.
        point_cloud_feature_extractor: samples and normalises point clouds (default: 8192 points, ULIP-2).
        chat_template (`str`, *optional*): defaults to the X-LLM prompt `Question: ...\n Answer: `.
        num_query_tokens (`dict[str, int]`): embeddings per item of each fixed-length interface
            (per frame for video, per window for audio), copied from the model config; the processor
            never imports the model.
        instruction_max_length (`int`): the Q-Former instruction is left-truncated to this many tokens.
        padding_side (`str`): `"left"` (for generation) or `"right"`.
        modalities (`list[str]`, *optional*): the model's interfaces (`config.modalities`). They decide
            where `audio=` goes: to the speech interface when the model has one and no audio interface,
            otherwise to the audio interface.
        modality_cues (`dict[str, str]`, *optional*): text written before each media block, per modality
            (X-InstructBLIP: `{"image": "image: ", ...}`), copied from `config.modality_cues`.
        audio_window_seconds (`float`, *optional*): window length for audio extractors that do not window
            themselves; by default read from the extractor (AST: `max_length` frames, Whisper: `chunk_length`).
        audio_max_windows (`int`, *optional*): windows per audio clip in training (shorter clips padded,
            longer ones truncated with a warning); None keeps every window (inference).
    """

    def __init__(
        self,
        image_processor=None,
        video_processor=None,
        tokenizer=None,
        qformer_tokenizer=None,
        speech_feature_extractor=None,
        audio_feature_extractor=None,
        point_cloud_feature_extractor=None,
        chat_template: str | None = None,
        num_query_tokens: dict[str, int] | None = None,
        instruction_max_length: int = 128,
        padding_side: str = "left",
        modalities: list[str] | None = None,
        modality_cues: dict[str, str] | None = None,
        audio_window_seconds: float | None = None,
        audio_max_windows: int | None = None,
        **kwargs,
    ):
        if padding_side not in ("left", "right"):
            raise ValueError(f"`padding_side` must be 'left' or 'right', got {padding_side!r}.")
        for name, keys in (("modalities", modalities), ("modality_cues", modality_cues)):
            unknown = sorted(set(keys or ()) - set(PLACEHOLDERS))
            if unknown:
                raise ValueError(f"`{name}` must name modalities among {list(PLACEHOLDERS)}, got {unknown}.")
        if audio_max_windows is not None and audio_max_windows < 1:
            raise ValueError(
                f"`audio_max_windows` must be None or a positive int, got {audio_max_windows!r}."
            )
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
        self.modalities = list(modalities) if modalities is not None else None
        self.modality_cues = dict(modality_cues) if modality_cues else None
        self.audio_window_seconds = audio_window_seconds
        self.audio_max_windows = audio_max_windows
        if chat_template is None:
            chat_template = default_chat_template()
        if speech_feature_extractor is None:
            speech_feature_extractor = XLLMSpeechFeatureExtractor()
        if audio_feature_extractor is None:
            audio_feature_extractor = XLLMAudioFeatureExtractor()
        if point_cloud_feature_extractor is None:
            point_cloud_feature_extractor = XLLMPointCloudFeatureExtractor()
        super().__init__(
            image_processor,
            video_processor,
            tokenizer,
            qformer_tokenizer,
            speech_feature_extractor,
            audio_feature_extractor,
            point_cloud_feature_extractor,
            chat_template=chat_template,
        )
        self.placeholder_ids = {
            m: tokenizer.convert_tokens_to_ids(token) for m, token in PLACEHOLDERS.items()
        }
        # Cues are inserted as token ids before each placeholder, so each is tokenized once, here.
        self.cue_token_ids = {
            m: tokenizer(cue, add_special_tokens=False)["input_ids"]
            for m, cue in (self.modality_cues or {}).items()
        }

    def __call__(
        self,
        images=None,
        text: str | list[str] | None = None,
        videos=None,
        audio=None,
        *,
        speech=None,
        point_clouds=None,
        speech_transcripts: list[str] | None = None,
        instructions: str | list[str] | None = None,
        return_tensors: str | None = "pt",
        padding_side: str | None = None,
        return_offsets_mapping: bool = False,
        add_special_tokens: bool = True,
        num_frames: int | None = None,
        audio_max_windows: int | None = None,
        max_length: int | None = None,
        **kwargs,
    ) -> BatchFeature:
        """Tokenize `text` and preprocess its media; each placeholder gets its interface's length.

        Media are flat (in the order their placeholders appear in the batch) or one list per
        sample. `instructions` (one per sample) is what instruction-aware Q-Formers read; by default
        the text with its placeholders removed. `speech` and `audio` items are waveforms, paths or
        `datasets.Audio` values; `audio` goes to the speech interface when the model has speech and
        no audio interface (see `modalities`). `point_clouds` are arrays, mesh files or
        `datasets.Mesh` values. `speech_transcripts` (training) give CIF its target lengths;
        `audio_max_windows` overrides the processor's setting for this call. A sample longer than
        `max_length` tokens (default: the tokenizer's `model_max_length`) loses its beginning, after the
        BOS token, with a warning; if that would cut a media placeholder, a ValueError is raised instead.
        """
        if text is None:
            raise ValueError(
                "`text` is required: it says where each media input goes (e.g. '<image> Describe it.')."
            )
        texts = list(text) if isinstance(text, (list, tuple)) else [text]
        if not all(isinstance(sample, str) for sample in texts):
            raise TypeError(f"`text` must be a string or a list of strings, got {type(text).__name__}.")
        check_keyword_typos(kwargs)
        media = {
            "image": flatten_media(images, "images"),
            "video": flatten_media(videos, "videos"),
            "speech": flatten_media(speech, "speech"),
            "audio": flatten_media(audio, "audio"),
            "point_cloud": flatten_media(point_clouds, "point_clouds"),
        }
        if media["audio"] and self.audio_goes_to_speech:
            if media["speech"]:
                raise ValueError(
                    "This model has no audio interface, so `audio` goes to the speech interface; pass speech "
                    "in `speech` or in `audio`, not in both."
                )
            media["speech"], media["audio"] = media["audio"], []
        self._check_media_counts(texts, media)

        data = {}
        tokens_per_item = {}  # modality -> LLM tokens of each of its items, in placeholder order
        if media["image"]:
            images = [checked_image(image, f"images[{index}]") for index, image in enumerate(media["image"])]
            data["pixel_values"] = self.image_processor(images, return_tensors="pt")["pixel_values"]
            tokens_per_item["image"] = [self._queries("image")] * len(media["image"])
        if media["video"]:
            frames_kwargs = {} if num_frames is None else {"num_frames": num_frames}
            pixel_values_videos = self._video_pixels(media["video"], frames_kwargs)
            data["pixel_values_videos"] = pixel_values_videos  # (videos, frames, C, H, W)
            tokens_per_item["video"] = [self._queries("video") * pixel_values_videos.shape[1]] * len(
                media["video"]
            )
        if media["speech"]:
            data.update(self._speech_features(media["speech"], speech_transcripts))
        if media["audio"]:
            max_windows = self.audio_max_windows if audio_max_windows is None else audio_max_windows
            data.update(self._audio_features(media["audio"], max_windows))
            windows_per_item = data["audio_window_mask"].sum(1).tolist()
            tokens_per_item["audio"] = [self._queries("audio") * count for count in windows_per_item]
        if media["point_cloud"]:
            data["point_clouds"] = self.point_cloud_feature_extractor(
                media["point_cloud"], return_tensors="pt"
            )["point_clouds"]  # (clouds, points, 3 or 6)
            tokens_per_item["point_cloud"] = [self._queries("point_cloud")] * len(media["point_cloud"])

        encoding = self.tokenizer(
            texts, add_special_tokens=add_special_tokens, return_offsets_mapping=return_offsets_mapping
        )
        expanded = self._expand_placeholders(encoding, tokens_per_item, return_offsets_mapping)
        empty = [index for index, sample in enumerate(expanded) if not sample["input_ids"]]
        if empty:
            raise ValueError(f"`text` must give at least one token per sample; sample(s) {empty} give none.")
        limit = self.tokenizer.model_max_length if max_length is None else max_length
        expanded = [self._truncate_left(sample, limit, index) for index, sample in enumerate(expanded)]
        data.update(self._pad(expanded, padding_side or self.padding_side))
        data.update(self._tokenize_instructions(texts, instructions))
        return BatchFeature(data, tensor_type=return_tensors, skip_tensor_conversion=["offset_mapping"])

    @property
    def audio_goes_to_speech(self) -> bool:
        """Whether `audio=` feeds the speech interface: the model has speech and no audio interface."""
        modalities = self.modalities or ()
        return "speech" in modalities and "audio" not in modalities

    def _audio_features(self, audio: list, max_windows: int | None) -> dict:
        """`audio_features` (audios, windows, *window_input) and `audio_window_mask` (audios, windows)."""
        extractor = self.audio_feature_extractor
        waveforms = [
            load_audio(item, target_sampling_rate=extractor.sampling_rate, name=f"audio[{index}]")
            for index, item in enumerate(audio)
        ]  # loaded here so errors name the processor's argument
        if "window_mask" in extractor.model_input_names:  # the extractor windows itself (BEATs)
            features = extractor(waveforms, max_windows=max_windows, return_tensors="pt")
            return {
                "audio_features": features["input_features"],
                "audio_window_mask": features["window_mask"],
            }
        window_samples = round(self.resolved_audio_window_seconds * extractor.sampling_rate)
        clips = [
            split_waveform(waveform, window_samples, max_windows, name=f"audio[{index}]")
            for index, waveform in enumerate(waveforms)
        ]
        # One extractor call over every window of the batch: each is padded to the encoder's length.
        windows = [window for clip in clips for window in clip]
        features = extractor(windows, sampling_rate=extractor.sampling_rate, return_tensors="pt")
        window_features = features["input_features" if "input_features" in features else "input_values"]
        num_windows = max_windows or max(len(clip) for clip in clips)
        window_mask = torch.zeros(len(clips), num_windows, dtype=torch.long)  # (audios, windows)
        for index, clip in enumerate(clips):
            window_mask[index, : len(clip)] = 1
        audio_features = window_features.new_zeros(len(clips), num_windows, *window_features.shape[1:])
        audio_features[window_mask.bool()] = window_features  # (audios, windows, *window_input)
        return {"audio_features": audio_features, "audio_window_mask": window_mask}

    @property
    def resolved_audio_window_seconds(self) -> float:
        """`audio_window_seconds`, or the window the audio extractor's encoder reads (AST, Whisper)."""
        if self.audio_window_seconds is not None:
            return self.audio_window_seconds
        extractor = self.audio_feature_extractor
        if getattr(extractor, "n_samples", None):  # Whisper: `chunk_length` seconds
            return extractor.n_samples / extractor.sampling_rate
        if getattr(extractor, "max_length", None):  # AST: `max_length` fbank frames at a 10 ms shift
            return extractor.max_length / AST_FRAMES_PER_SECOND
        raise ValueError(
            f"`audio_window_seconds` is None and the audio feature extractor {type(extractor).__name__} defines no "
            "window length; pass `audio_window_seconds` to the processor."
        )

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

    def _video_pixels(self, videos: list, frames_kwargs: dict) -> torch.Tensor:
        """`pixel_values_videos` (videos, frames, C, H, W); an undecodable file is a ValueError."""
        try:
            return self.video_processor(videos, return_tensors="pt", **frames_kwargs)["pixel_values_videos"]
        except RuntimeError as error:  # torchcodec reports a file it cannot open as a RuntimeError
            files = [os.fspath(video) for video in videos if isinstance(video, (str, os.PathLike))]
            if not files:
                raise
            raise ValueError(
                f"`videos` must be video files that decode or frame arrays; decoding one of {files} failed: {error}"
            ) from error

    def _truncate_left(self, sample: dict[str, list], max_length: int, index: int) -> dict[str, list]:
        """Cut the beginning of a sample longer than `max_length` tokens, after its BOS token, so the
        end of the prompt (the question, `Answer:`) stays; refuse when a media block would be cut."""
        input_ids = sample["input_ids"]
        excess = len(input_ids) - max_length
        if excess <= 0:
            return sample
        kept_prefix = 1 if input_ids[0] == self.tokenizer.bos_token_id else 0
        cut_end = kept_prefix + excess
        first_media = self._first_media_block_start(input_ids)
        if max_length <= kept_prefix or (first_media is not None and first_media < cut_end):
            raise ValueError(
                f"`text[{index}]` is {len(input_ids)} tokens long and `max_length` is {max_length}: cutting its "
                f"first {excess} tokens would cut a media placeholder (the first media block starts at token "
                f"{first_media}). Shorten the text before the media or raise `max_length`."
            )
        warnings.warn(
            f"`text[{index}]` is {len(input_ids)} tokens long, more than `max_length`={max_length}; its first "
            f"{excess} tokens after BOS are cut.",
            stacklevel=3,
        )
        return {key: values[:kept_prefix] + values[cut_end:] for key, values in sample.items()}

    def _first_media_block_start(self, input_ids: list[int]) -> int | None:
        """Position of the first placeholder's cue (or of the placeholder itself without a cue)."""
        modality_of = {token_id: m for m, token_id in self.placeholder_ids.items()}
        for position, token_id in enumerate(input_ids):
            if token_id in modality_of:
                return position - len(self.cue_token_ids.get(modality_of[token_id], []))
        return None

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
        self, encoding, tokens_per_item: dict[str, list[int]], with_offsets: bool
    ) -> list[dict[str, list]]:
        """Repeat each placeholder token as many times as its item has interface outputs, after the
        modality's cue tokens; cue and repeats keep the placeholder's character offsets."""
        modality_of = {token_id: m for m, token_id in self.placeholder_ids.items()}
        item_lengths = {m: iter(lengths) for m, lengths in tokens_per_item.items()}
        samples = []
        for index, sample_ids in enumerate(encoding["input_ids"]):
            source_offsets = encoding["offset_mapping"][index] if with_offsets else None
            input_ids, offsets = [], []
            for position, token_id in enumerate(sample_ids):
                modality = modality_of.get(token_id)
                block = [token_id]
                if modality is not None:
                    # Speech keeps one placeholder: the model splices in as many tokens as CIF fires.
                    repeats = next(item_lengths[modality]) if modality in item_lengths else 1
                    block = self.cue_token_ids.get(modality, []) + [token_id] * repeats
                input_ids.extend(block)
                if with_offsets:
                    offsets.extend([tuple(source_offsets[position])] * len(block))
            sample = {"input_ids": input_ids}
            if with_offsets:
                sample["offset_mapping"] = offsets
            samples.append(sample)
        return samples

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
        """Images and videos as `ProcessorMixin` extracts them; speech, audio and point clouds as they
        are in the messages, for this processor's own loaders. Audio parts are hidden from
        `ProcessorMixin`, which would decode them with transformers' loader."""
        if load_audio_from_video:
            raise ValueError(
                "`load_audio_from_video=True` is not supported: give the sound track as its own "
                "{'type': 'audio', 'audio': ...} part."
            )
        without_audio = [[without_content_type(message, "audio") for message in c] for c in conversations]
        images, videos, _, extra = super()._multimodal_inputs_from_conversations(
            without_audio, audio_loading_params
        )
        extra["instructions"] = [conversation_instruction(conversation) for conversation in conversations]
        speech = [item for conversation in conversations for item in media_of(conversation, "speech")]
        point_clouds = [
            item for conversation in conversations for item in media_of(conversation, "point_cloud")
        ]
        if speech:
            extra["speech"] = speech
        if point_clouds:
            extra["point_clouds"] = point_clouds
        audio = [item for conversation in conversations for item in media_of(conversation, "audio")]
        return images, videos, audio, extra

    def apply_chat_template(self, conversation, chat_template: str | None = None, **kwargs):
        """`ProcessorMixin.apply_chat_template`, plus `labels` when `return_assistant_tokens_mask=True`:
        the assistant tokens, everything else (prompt, placeholders, padding) set to -100.

        Content parts of an unknown type are a ValueError (the template would drop them silently). A
        conversation without assistant tokens cannot be trained on (its labels would all be -100): with
        `return_assistant_tokens_mask=True` it is a ValueError."""
        check_content_types(conversation)
        outputs = super().apply_chat_template(conversation, chat_template=chat_template, **kwargs)
        if (
            kwargs.get("return_assistant_tokens_mask")
            and kwargs.get("return_dict")
            and kwargs.get("tokenize")
        ):
            input_ids = torch.as_tensor(outputs["input_ids"])
            assistant = torch.as_tensor(outputs["assistant_masks"]).bool()
            unanswered = (~assistant.any(dim=-1)).nonzero().flatten().tolist()
            if unanswered:
                raise ValueError(
                    f"`conversation` must have an assistant answer to compute labels; conversation(s) {unanswered} "
                    "have no assistant tokens. Add an assistant turn, or leave out `return_assistant_tokens_mask` "
                    "for generation."
                )
            outputs["labels"] = input_ids.masked_fill(~assistant, IGNORE_INDEX)
        return outputs

    @staticmethod
    def get_possibly_dynamic_module(module_name: str):
        """Sub-processor class by name, as saved in `processor_config.json`. Ours are resolved here:
        transformers' own lookup breaks on them (it expects every registered video processor to be a
        class, but `AutoVideoProcessor.register` stores a dict)."""
        if module_name in OWN_FEATURE_EXTRACTORS:
            return OWN_FEATURE_EXTRACTORS[module_name]
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
            "audio_features",
            "audio_window_mask",
            "point_clouds",
        ]


def check_keyword_typos(kwargs: dict) -> None:
    """Processors accept extra keywords for their sub-processors, so media under a misspelt keyword
    (`image=`, `pointclouds=`) would be dropped silently: a keyword close to one of ours is a TypeError."""
    for name in kwargs:
        close = difflib.get_close_matches(name, CALL_KEYWORDS, n=1, cutoff=0.8)
        if close:
            raise TypeError(
                f"XLLMProcessor got an unexpected keyword argument `{name}` (did you mean `{close[0]}`?); media "
                f"keywords are {list(MEDIA_KEYWORDS.values())}."
            )


def checked_image(image, name: str):
    """One image ready for the image processor. Files are decoded here, so a corrupt one fails with its
    name; a 2-D (grayscale) array gets three equal channels, as the image processor's RGB conversion
    gives grayscale PIL images; empty images and arrays of other than real numbers are refused."""
    if isinstance(image, (str, os.PathLike)):
        try:
            return load_image(os.fspath(image))
        except (OSError, ValueError) as error:
            raise ValueError(
                f"`{name}` must be an image file, URL or base64 string that decodes; {os.fspath(image)[:200]!r} "
                f"did not ({error})"
            ) from error
    if isinstance(image, (np.ndarray, torch.Tensor)):
        return checked_image_array(image, name)
    width, height = getattr(image, "width", 1), getattr(image, "height", 1)
    if width == 0 or height == 0:
        raise ValueError(f"`{name}` must have at least one pixel, got a {width}x{height} image")
    return image


def checked_image_array(image: np.ndarray | torch.Tensor, name: str) -> np.ndarray | torch.Tensor:
    """An image array of integers (0-255) or floats, (height, width) or with a channel axis."""
    if isinstance(image, torch.Tensor):
        real_numbers = not image.dtype.is_complex and image.dtype != torch.bool
    else:
        real_numbers = np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)
    if not real_numbers:
        raise TypeError(f"`{name}` must hold integers (0-255) or floats, got dtype {image.dtype}")
    if image.ndim not in (2, 3) or 0 in image.shape:
        raise ValueError(
            f"`{name}` must be a non-empty (height, width) or (height, width, channels) / (channels, height, "
            f"width) array, got shape {tuple(image.shape)}"
        )
    if image.ndim == 2:  # grayscale -> (height, width, 3) / (3, height, width)
        return (
            np.repeat(image[..., None], 3, axis=-1)
            if isinstance(image, np.ndarray)
            else image.expand(3, -1, -1)
        )
    return image


def check_content_types(conversation) -> None:
    """Refuse content parts the chat template would drop silently (`{"type": "smell"}`)."""
    conversations = [conversation] if conversation and isinstance(conversation[0], dict) else conversation
    for messages in conversations:
        for message in messages:
            content = message.get("content")
            for part in content if isinstance(content, list) else ():
                if part.get("type") not in CHAT_CONTENT_TYPES:
                    raise ValueError(
                        f"`conversation` content parts must have a `type` among {list(CHAT_CONTENT_TYPES)}, got "
                        f"{part.get('type')!r}."
                    )


def media_of(conversation: list[dict], content_type: str) -> list:
    """The media of one content type in a conversation, in order (`{"type": "speech", "path": ...}`)."""
    items = []
    for message in conversation:
        content = message.get("content") or []
        if isinstance(content, str):
            continue
        for part in content:
            if part.get("type") == content_type:
                items.extend(part[key] for key in CHAT_MEDIA_KEYS[content_type] if key in part)
    return items


def without_content_type(message: dict, content_type: str) -> dict:
    """A copy of `message` without its parts of `content_type`."""
    content = message.get("content")
    if not isinstance(content, list):
        return message
    return {**message, "content": [part for part in content if part.get("type") != content_type]}


def split_waveform(waveform, window_samples: int, max_windows: int | None, name: str) -> list:
    """Consecutive windows of `window_samples` samples (the last one shorter, padded by the extractor),
    at most `max_windows` of them (a warning says when some are cut)."""
    windows = [
        waveform[start : start + window_samples] for start in range(0, max(len(waveform), 1), window_samples)
    ]
    if max_windows is not None and len(windows) > max_windows:
        warnings.warn(
            f"`{name}` spans {len(windows)} windows; keeping the first {max_windows} (audio_max_windows).",
            stacklevel=4,
        )
        windows = windows[:max_windows]
    return windows


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
