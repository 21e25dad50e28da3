"""One processor for every modality of X-LLM.

Text is tokenized with each media placeholder (`<image>`, `<video>`, ...) as a single token, then
every placeholder token is expanded, at the token level, to the number of embeddings its interface
produces. Expanding token ids (not text) keeps character offsets pointing into the original text,
so assistant masks computed from the chat template stay aligned. The instruction that
instruction-aware Q-Formers read is tokenized separately with the Q-Former's tokenizer.
"""

import difflib
import functools
import math
import re
import warnings
from importlib import resources

import numpy as np
import torch
from transformers import BatchFeature, TensorType
from transformers.audio_utils import AudioInput
from transformers.image_utils import ImageInput
from transformers.processing_utils import (
    AudioKwargs,
    MultiModalData,
    ProcessingKwargs,
    ProcessorMixin,
    Unpack,
)
from transformers.tokenization_utils_base import PaddingStrategy, TruncationStrategy
from transformers.video_utils import VideoInput

from .audio_loading_xllm import load_audio
from .chat_messages_xllm import check_conversation, conversation_instruction, media_of, without_content_types
from .feature_extraction_audio_xllm import XLLMAudioFeatureExtractor
from .feature_extraction_point_cloud_xllm import XLLMPointCloudFeatureExtractor
from .feature_extraction_speech_xllm import XLLMSpeechFeatureExtractor
from .image_loading_xllm import checked_image
from .merged_options_xllm import remembered_merge
from .processor_modalities import MODALITIES, ProcessorModality, keywords, placeholder, processor_modality
from .prompt_formats_xllm import encode_pieces, prompt_format_dict, prompt_format_from
from .video_loading_xllm import is_encoded_video, load_video_frames

# Feature extractors of this package that the processor resolves itself when loading.
OWN_FEATURE_EXTRACTORS = {
    cls.__name__: cls
    for cls in (XLLMSpeechFeatureExtractor, XLLMAudioFeatureExtractor, XLLMPointCloudFeatureExtractor)
}
# Kaldi fbank frame shift of transformers' AST feature extractor: `max_length` frames span max_length / 100 s.
AST_FRAMES_PER_SECOND = 100
IGNORE_INDEX = -100
TEXT_INPUT_NAMES = ("input_ids", "attention_mask", "qformer_input_ids", "qformer_attention_mask")


class XLLMAudioKwargs(AudioKwargs, total=False):
    """`max_windows`: windows per sound for this call (default: the processor's `audio_max_windows`)."""

    max_windows: int | None


class XLLMProcessorKwargs(ProcessingKwargs, total=False):
    """The call-time options of [`XLLMProcessor`], by the sub-processor they go to, merged by
    `ProcessorMixin._merge_kwargs` (flat, `images_kwargs={...}`, or `common_kwargs`; one option given twice is
    a ValueError). `text_kwargs` are applied by the processor itself, which tokenizes and expands the
    placeholders: `add_special_tokens`, `padding` (`"longest"`, `"max_length"` with `max_length`, or no padding
    for equal lengths), `pad_to_multiple_of`, `truncation` with `max_length` (the beginning of a long sample is
    cut, never a media block), `padding_side`, `return_offsets_mapping`, `return_tensors`. `images_kwargs` go
    to the image processor, `videos_kwargs` to the video processor (`num_frames`, ...), `audio_kwargs`'s
    `max_windows` to the sound windowing."""

    audio_kwargs: XLLMAudioKwargs


def option_names(kwargs_class) -> frozenset[str]:
    """Every option a `ProcessingKwargs` class names: its groups (`text_kwargs`, ...) and their keys."""
    names = set()
    for group, group_class in kwargs_class.__annotations__.items():
        names.add(group)
        names.update(getattr(group_class, "__annotations__", {}))
    return frozenset(names)


def default_chat_template() -> str:
    """The X-LLM prompt template (`Question: ...\\n Answer: ...`) shipped with the package."""
    return resources.files(__package__).joinpath("chat_template_xllm.jinja").read_text()


def call_keywords() -> tuple[str, ...]:
    """Keywords of `XLLMProcessor.__call__` that a misspelling (`image=`) must not silently drop."""
    return ("text", *keywords(), "instructions", "speech_transcripts", "precomputed_windows")


def flatten_media(media, row: ProcessorModality) -> list:
    """Media come flat (one list for the batch) or nested (one list per sample); return them flat."""
    if media is None:
        return []
    if not isinstance(media, (list, tuple)):
        return [media]
    flat = []
    for item in media:
        if isinstance(item, (list, tuple)) and not (row.preparation == "video" and is_frame_list(item)):
            flat.extend(item)
        else:
            flat.append(item)
    return flat


TOKEN_ROWS = ("input_ids", "attention_mask", "qformer_input_ids", "qformer_attention_mask")


def token_tensor(rows: list[list[int]], return_tensors) -> list[list[int]] | np.ndarray | torch.Tensor:
    """Padded token rows as the asked tensor type (int64), through NumPy: `torch.tensor` on nested lists, what
    `BatchFeature` would use, takes about 6x as long (measured on a batch of 32 rows of 40 ids: 180 us against
    27 us); other types are left to `BatchFeature`."""
    if not isinstance(return_tensors, str):  # None, or a type object (`TensorType` is a str)
        return rows
    kind = TensorType(return_tensors)
    if kind not in (TensorType.PYTORCH, TensorType.NUMPY):
        return rows
    array = np.array(rows, dtype=np.int64)
    return torch.from_numpy(array) if kind == TensorType.PYTORCH else array


def placeholder_positions(token_ids: list[int], placeholder_ids) -> list[int]:
    """Positions of the placeholder tokens in a sample, in order (found with `list.index`, not a scan in
    Python: most tokens are text)."""
    positions = []
    for placeholder_id in set(placeholder_ids).intersection(token_ids):
        position = token_ids.index(placeholder_id)
        while True:
            positions.append(position)
            try:
                position = token_ids.index(placeholder_id, position + 1)
            except ValueError:
                break
    return sorted(positions)


def is_frame_list(item: list | tuple) -> bool:
    """A list that is one video given as frames (images or (H, W, C) arrays), not a list of videos
    (paths, bytes, decoders or (frames, H, W, C) arrays)."""
    first = item[0] if item else None
    return first is not None and not is_encoded_video(first) and getattr(first, "ndim", 3) == 3


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
        modalities (`list[str]`, *optional*): the model's interfaces (`config.modalities`). They decide
            where `audio=` goes: to the speech interface when the model has one and no audio interface,
            otherwise to the audio interface.
        modality_cues (`dict[str, str]`, *optional*): text written before each media block, per modality
            (X-InstructBLIP: `{"image": "image: ", ...}`), copied from `config.modality_cues`.
        audio_window_seconds (`float`, *optional*): window length for audio extractors that do not window
            themselves; by default read from the extractor (AST: `max_length` frames, Whisper: `chunk_length`).
        audio_max_windows (`int`, *optional*): windows per audio clip in training (shorter clips padded,
            longer ones truncated with a warning); None keeps every window (inference).
        prompt_format (`str` or `dict`, *optional*): how text and media become the LLM's tokens
            (`prompt_formats_xllm.py`): `"parts"` (default: the text as written, cues from `modality_cues`),
            `"lavis"` (X-InstructBLIP's assembly, with its options: `{"name": "lavis", "prefix": ...}`) or
            `"x-llm"` (X-LLM's). Saved in `processor_config.json` as a dict.

    Text is padded on the left by default (for generation); `padding_side="right"` at call time changes it.
    The placeholder of each modality is the attribute `<modality>_token` (`image_token`, `video_token`, ...).
    """

    valid_processor_kwargs = XLLMProcessorKwargs
    text_kwargs = {"padding": "longest", "padding_side": "left", "return_tensors": "pt"}

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
        modalities: list[str] | None = None,
        modality_cues: dict[str, str] | None = None,
        audio_window_seconds: float | None = None,
        audio_max_windows: int | None = None,
        prompt_format: str | dict | None = None,
        **kwargs,
    ):
        # Folders saved before the call-time options followed `ProcessingKwargs` store the text padding side
        # here; it is now a text option (`padding_side=` at call time), whose default this sets.
        padding_side = kwargs.pop("padding_side", None)
        if padding_side is not None:
            if padding_side not in ("left", "right"):
                raise ValueError(f"`padding_side` must be 'left' or 'right', got {padding_side!r}.")
            self.text_kwargs = {**type(self).text_kwargs, "padding_side": padding_side}
        for name, keys in (("modalities", modalities), ("modality_cues", modality_cues)):
            unknown = sorted(set(keys or ()) - set(MODALITIES))
            if unknown:
                raise ValueError(f"`{name}` must name modalities among {list(MODALITIES)}, got {unknown}.")
        if audio_max_windows is not None and audio_max_windows < 1:
            raise ValueError(
                f"`audio_max_windows` must be None or a positive int, got {audio_max_windows!r}."
            )
        # In table order: the presets' placeholder token ids assume it.
        missing = [placeholder(m) for m in MODALITIES if placeholder(m) not in tokenizer.get_vocab()]
        if missing:
            tokenizer.add_special_tokens(
                {"additional_special_tokens": missing}, replace_extra_special_tokens=False
            )
        if qformer_tokenizer is not None:
            qformer_tokenizer.truncation_side = "left"  # long instructions keep their end (X-InstructBLIP)
        self.num_query_tokens = dict(num_query_tokens or {})
        self.instruction_max_length = instruction_max_length
        self.modalities = list(modalities) if modalities is not None else None
        self.modality_cues = dict(modality_cues) if modality_cues else None
        self.audio_window_seconds = audio_window_seconds
        self.audio_max_windows = audio_max_windows
        self.prompt_format = prompt_format_dict(prompt_format)
        if self.prompt_format["name"] != "parts" and self.modality_cues:
            raise ValueError(
                f"The {self.prompt_format['name']!r} prompt format writes its own cues; `modality_cues` must be None, "
                f"got {self.modality_cues}."
            )
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
        self.placeholder_ids = {m: tokenizer.convert_tokens_to_ids(placeholder(m)) for m in MODALITIES}
        for (
            modality
        ) in MODALITIES:  # `image_token`, `image_token_id`, `video_token`, ... as transformers names them
            setattr(self, f"{modality}_token", placeholder(modality))
            setattr(self, f"{modality}_token_id", self.placeholder_ids[modality])
        # Cues are inserted as token ids before each placeholder, so each is tokenized once, here.
        self.cue_token_ids = {
            m: tokenizer(cue, add_special_tokens=False)["input_ids"]
            for m, cue in (self.modality_cues or {}).items()
        }

    def __call__(
        self,
        images: ImageInput | None = None,
        text: str | list[str] | None = None,
        videos: VideoInput | None = None,
        audio: AudioInput | None = None,
        *,
        speech: AudioInput | None = None,
        point_clouds: list | None = None,
        speech_transcripts: list[str] | None = None,
        instructions: str | list[str] | None = None,
        precomputed_windows: dict[str, list[int]] | None = None,
        **kwargs: Unpack[XLLMProcessorKwargs],
    ) -> BatchFeature:
        """Tokenize `text` and preprocess its media; each placeholder gets its interface's length.

        Media are flat (in the order their placeholders appear in the batch) or one list per
        sample. `instructions` (one per sample) is what instruction-aware Q-Formers read; by default
        the text with its placeholders removed. `speech` and `audio` items are waveforms, paths or
        `datasets.Audio` values; `audio` goes to the speech interface when the model has speech and
        no audio interface (see `modalities`). `point_clouds` are arrays, mesh files or
        `datasets.Mesh` values. `speech_transcripts` (training) give CIF its target lengths. Options (padding,
        `max_length`, `num_frames`, `images_kwargs={...}`, ...) are described in [`XLLMProcessorKwargs`]. Without
        `truncation`, a sample longer than `max_length` tokens (default: the tokenizer's `model_max_length`) loses
        its beginning, after the BOS token, with a warning; `truncation=True` cuts it without one, `truncation=False`
        keeps it whole. If the cut would reach a media placeholder, a ValueError is raised instead.

        `precomputed_windows` (modality -> one count per item, in placeholder order) stands in for the
        media of modalities whose encoder features were computed beforehand (a feature cache): their
        placeholders are expanded for that many frames or windows, and no media tensors are made.
        """
        if text is None:
            raise ValueError(
                "`text` is required: it says where each media input goes (e.g. '<image> Describe it.')."
            )
        texts = list(text) if isinstance(text, (list, tuple)) else [text]
        if not all(isinstance(sample, str) for sample in texts):
            raise TypeError(f"`text` must be a string or a list of strings, got {type(text).__name__}.")
        given = dict(images=images, videos=videos, audio=audio, speech=speech, point_clouds=point_clouds)
        given.update({keyword: kwargs.pop(keyword) for keyword in keywords() if keyword in kwargs})
        check_keyword_typos(kwargs)
        # The tokenizer's own defaults (`padding`, `max_length`) apply, except its padding side: the processor
        # pads on the left (for generation) whatever side the tokenizer was saved with.
        tokenizer_defaults = {k: v for k, v in self.tokenizer.init_kwargs.items() if k != "padding_side"}
        options = self._merge_kwargs(self.valid_processor_kwargs, tokenizer_defaults, **kwargs)
        text_options = options["text_kwargs"]
        text_options["padding_side"] = text_options.get("padding_side") or self.padding_side
        num_frames = options["videos_kwargs"].pop("num_frames", None)
        sub_processor_options = {"image": options["images_kwargs"], "video": options["videos_kwargs"]}
        media = {modality: flatten_media(given.get(row.keyword), row) for modality, row in MODALITIES.items()}
        if media["audio"] and self.audio_goes_to_speech:
            if media["speech"]:
                raise ValueError(
                    "This model has no audio interface, so `audio` goes to the speech interface; pass speech "
                    "in `speech` or in `audio`, not in both."
                )
            media["speech"], media["audio"] = media["audio"], []
        precomputed = dict(precomputed_windows or {})
        for modality, counts in precomputed.items():
            processor_modality(modality)  # a ValueError for a modality the table lacks
            if media[modality]:
                raise ValueError(
                    f"The {modality} items came both as media and in `precomputed_windows`; give one."
                )
            media[modality] = list(counts)  # counted like media below
        self._check_media_counts(texts, media)

        data = {}
        tokens_per_item = {}  # modality -> LLM tokens of each of its items, in placeholder order
        for modality, counts in precomputed.items():
            if MODALITIES[modality].layout != "sequence":
                tokens_per_item[modality] = [self._queries(modality) * count for count in counts]
            elif speech_transcripts is not None:
                data[MODALITIES[modality].target_lengths] = self.transcript_lengths(
                    speech_transcripts, len(counts)
                )
        for modality, items in media.items():
            if modality in precomputed:
                continue
            if items:
                prepared = self.prepare_media(
                    modality,
                    items,
                    num_frames=num_frames,
                    max_windows=options["audio_kwargs"].get("max_windows"),
                    transcripts=speech_transcripts,
                    **sub_processor_options.get(modality, {}),
                )
                data.update(prepared)
                if MODALITIES[modality].layout != "sequence":  # CIF decides: one placeholder stays
                    tokens_per_item[modality] = self._tokens_per_item(modality, prepared)

        return_offsets_mapping = bool(text_options.get("return_offsets_mapping"))
        rules = prompt_format_from(self.prompt_format)
        if rules is None:
            encoding = self.tokenizer(
                texts,
                add_special_tokens=text_options.get("add_special_tokens", True),
                return_offsets_mapping=return_offsets_mapping,
                return_attention_mask=False,  # the mask is made with the padding, after expansion
                return_token_type_ids=False,
            )
        else:
            encoding, instructions = self._format_texts(rules, texts, instructions, return_offsets_mapping)
        expanded = self._expand_placeholders(encoding, tokens_per_item, return_offsets_mapping)
        empty = [index for index, sample in enumerate(expanded) if not sample["input_ids"]]
        if empty:
            raise ValueError(f"`text` must give at least one token per sample; sample(s) {empty} give none.")
        max_length = text_options.get("max_length")
        truncation = text_options.get("truncation")
        limit = self.tokenizer.model_max_length if max_length is None else max_length
        truncating = truncation not in (False, "do_not_truncate", TruncationStrategy.DO_NOT_TRUNCATE)
        if truncating and any(len(sample["input_ids"]) > limit for sample in expanded):
            expanded = [
                self._truncate_left(sample, limit, index, warn=truncation is None)
                for index, sample in enumerate(expanded)
            ]
        data.update(
            self._pad(
                expanded,
                text_options["padding_side"],
                self._padded_length(expanded, text_options.get("padding"), max_length, text_options),
            )
        )
        data.update(self._tokenize_instructions(texts, instructions))
        if options.get(
            "return_mm_token_type_ids"
        ):  # 1 image, 2 video, 3 audio placeholders (vLLM reads them)
            data["mm_token_type_ids"] = self.create_mm_token_type_ids(data["input_ids"])
        wants_replacements = options.get("return_text_replacement_offsets") or text_options.get(
            "return_text_replacement_offsets"
        )
        # `offset_mapping` is in the text's own coordinates (expanded placeholders keep theirs), so it needs no
        # replacement offsets to map it back; transformers' assistant masks (which ask for both) would shift it.
        if wants_replacements and not return_offsets_mapping:
            data["text_replacement_offsets"] = self._replacement_offsets(data["input_ids"], tokens_per_item)
        return_tensors = text_options.get("return_tensors")
        for name in TOKEN_ROWS:
            if name in data:
                data[name] = token_tensor(data[name], return_tensors)
        return BatchFeature(
            data,
            tensor_type=return_tensors,
            skip_tensor_conversion=["offset_mapping", "text_replacement_offsets"],
        )

    def _replacement_offsets(self, input_ids: list[list[int]], tokens_per_item: dict[str, list[int]]) -> list:
        """Where each media block (its cue and repeated placeholders) lies in each sample's decoded text:
        per sample, `{"type", "replacement", "new_span"}` dicts in text order, spans indexing
        `tokenizer.batch_decode(input_ids, skip_special_tokens=False)` (what vLLM reads). The expansion is
        done on token ids, so the spans are found in the decoded text rather than carried from the text."""
        modality_of = {token_id: m for m, token_id in self.placeholder_ids.items()}
        item_lengths = {m: iter(lengths) for m, lengths in tokens_per_item.items()}
        offsets = []
        for sample_ids in input_ids:
            decoded = self.tokenizer.decode(sample_ids, skip_special_tokens=False)
            sample_offsets, position, cursor = [], 0, 0
            while position < len(sample_ids):
                modality = modality_of.get(sample_ids[position])
                if modality is None:
                    position += 1
                    continue
                repeats = next(item_lengths[modality]) if modality in item_lengths else 1
                start = position - len(self.cue_token_ids.get(modality, []))
                replacement = self.tokenizer.decode(
                    sample_ids[start : position + repeats], skip_special_tokens=False
                )
                char_start = decoded.find(replacement, cursor)
                if char_start < 0:
                    raise ValueError(
                        f"The decoded text of a {modality} block ({replacement[:40]!r}...) is not in its sample's decoded "
                        "text: this tokenizer's decoding depends on context, so the replacement offsets cannot be given."
                    )
                cursor = char_start + len(replacement)
                sample_offsets.append(
                    {"type": modality, "replacement": replacement, "new_span": (char_start, cursor)}
                )
                position += repeats
            offsets.append(sample_offsets)
        return offsets

    def _merge_kwargs(
        self, ModelProcessorKwargs=None, tokenizer_init_kwargs: dict | None = None, **kwargs
    ) -> dict:
        """`ProcessorMixin._merge_kwargs`, remembered per set of call options (`merged_options_xllm`)."""
        return remembered_merge(
            self,
            super()._merge_kwargs,
            ModelProcessorKwargs or self.valid_processor_kwargs,
            tokenizer_init_kwargs,
            kwargs,
        )

    def _get_num_multimodal_tokens(
        self,
        image_sizes: list | None = None,
        video_sizes: list | None = None,
        audio_lengths: list[int] | None = None,
        **kwargs,
    ) -> MultiModalData:
        """LLM tokens of each image (`(height, width)`), video (`(frames, height, width)`) or sound (its length
        in samples at the audio extractor's rate) a call would give, without processing them (vLLM's helper):
        an image takes its interface's queries whatever its size; a video its sampled frames (the video
        processor's `num_frames`, or all frames with `do_sample_frames=False`) times the queries; a sound its
        windows times the queries. Sounds that go to the speech interface (a model without an audio interface)
        are not counted: CIF decides their length."""
        data = {}
        options = self._merge_kwargs(self.valid_processor_kwargs, **kwargs)
        if audio_lengths is not None and not self.audio_goes_to_speech:
            max_windows = options["audio_kwargs"].get("max_windows")
            data["num_audio_tokens"] = [
                self._queries("audio") * self._audio_windows_of(length, max_windows)
                for length in audio_lengths
            ]
        if image_sizes is not None:
            data["num_image_tokens"] = [self._queries("image")] * len(image_sizes)
            data["num_image_patches"] = [1] * len(image_sizes)
        if video_sizes is not None:
            videos_kwargs = options["videos_kwargs"]
            sampled = videos_kwargs.get("do_sample_frames")
            if sampled is None:
                sampled = self.video_processor.do_sample_frames
            num_frames = videos_kwargs.get("num_frames") or self.video_processor.num_frames
            data["num_video_tokens"] = [
                self._queries("video") * (num_frames if sampled else frames) for frames, *_ in video_sizes
            ]
        return MultiModalData(**data)

    @staticmethod
    def _padded_length(samples: list[dict], padding, max_length: int | None, text_options: dict) -> int:
        """The length every sample is padded to: the longest (`padding` True / "longest"), `max_length`
        ("max_length"), or the samples' own when they agree (no padding); rounded up to `pad_to_multiple_of`."""
        longest = max(len(sample["input_ids"]) for sample in samples)
        if padding in ("max_length", PaddingStrategy.MAX_LENGTH):
            if max_length is None:
                raise ValueError('`padding="max_length"` needs `max_length`.')
            length = max(max_length, longest)
        elif padding in (False, "do_not_pad", PaddingStrategy.DO_NOT_PAD):
            lengths = sorted({len(sample["input_ids"]) for sample in samples})
            if len(lengths) > 1:
                raise ValueError(
                    f"`padding={padding!r}` leaves samples of different lengths ({lengths}), which cannot form one "
                    'tensor; pad them (`padding="longest"`).'
                )
            length = longest
        else:
            length = longest
        multiple = text_options.get("pad_to_multiple_of")
        if multiple:
            length = -(-length // multiple) * multiple
        return length

    @property
    def audio_goes_to_speech(self) -> bool:
        """Whether `audio=` feeds the speech interface: the model has speech and no audio interface."""
        modalities = self.modalities or ()
        return "speech" in modalities and "audio" not in modalities

    def prepare_media(
        self,
        modality: str,
        items: list,
        num_frames: int | None = None,
        max_windows: int | None = None,
        transcripts: list[str] | None = None,
        **sub_processor_kwargs,
    ) -> dict[str, torch.Tensor]:
        """The model inputs of one modality's items, without text (see `processor_modalities.py` for how
        each kind is prepared): what `__call__` gives for them, and what stage 1 trains on. `num_frames`
        (videos), `max_windows` (sounds; default: the processor's `audio_max_windows`) and `transcripts`
        (speech: CIF's target lengths) apply to their kinds only; `sub_processor_kwargs` (`images_kwargs` /
        `videos_kwargs` of a call) go to the image or video processor."""
        sub_processor_kwargs = {**sub_processor_kwargs, "return_tensors": "pt"}
        row = processor_modality(modality)
        sub_processor = getattr(self, row.sub_processor)
        # Frame sampling of encoded videos happens as they are decoded (by count, or by rate with `fps`);
        # `do_sample_frames=False` keeps every frame.
        fps = sub_processor_kwargs.pop("fps", None)
        do_sample_frames = sub_processor_kwargs.pop("do_sample_frames", None)
        loaded = [
            self._load(row, item, f"{row.keyword}[{index}]", num_frames, fps, do_sample_frames)
            for index, item in enumerate(items)
        ]
        if row.preparation == "video":
            if do_sample_frames is False or all(is_encoded_video(item) for item in items):
                sub_processor_kwargs["do_sample_frames"] = False  # sampled above, or not at all
                num_frames = None
            return {row.outputs[0]: self._video_pixels(loaded, row, num_frames, **sub_processor_kwargs)}
        if row.preparation == "audio_windows":
            windows = self.audio_max_windows if max_windows is None else max_windows
            return dict(zip(row.outputs, self._audio_windows(loaded, windows), strict=True))
        if row.preparation == "speech":
            return self._speech_features(loaded, row, transcripts)
        features = sub_processor(loaded, **sub_processor_kwargs)
        return {row.outputs[0]: features[sub_processor.model_input_names[0]]}

    def pad(self, encodings: list, padding_side: str | None = None) -> BatchFeature:
        """One batch from encodings made a sample at a time (`__call__` or `apply_chat_template` on each):
        what one call over all their samples gives. Serving prepares each request on its own, so that a bad
        one fails alone, and batches them here.

        Text (and `labels`) is padded on `padding_side` (default: the processor's), Q-Former instructions on
        the Q-Former tokenizer's side; each modality's tensors are stacked, their windows or frames padded
        at the end with the sub-processor's `padding_value` and their masks with zeros."""
        if not encodings:
            raise ValueError("`encodings` is empty; expected at least one encoding to pad.")
        side = padding_side or self.padding_side
        pad_id = (
            self.tokenizer.pad_token_id
            if self.tokenizer.pad_token_id is not None
            else self.tokenizer.eos_token_id
        )
        qformer = self.qformer_tokenizer
        fills = {
            "input_ids": (pad_id, side),
            "attention_mask": (0, side),
            "labels": (IGNORE_INDEX, side),
            "assistant_masks": (0, side),
            "qformer_input_ids": (qformer.pad_token_id, qformer.padding_side),
            "qformer_attention_mask": (0, qformer.padding_side),
        }
        for row in MODALITIES.values():
            padding_value = float(getattr(getattr(self, row.sub_processor), "padding_value", 0.0) or 0.0)
            has_mask = len(row.outputs) > 1  # without a mask (images, videos) shapes must agree
            fills[row.outputs[0]] = (padding_value, "right") if has_mask else (None, None)
            fills.update({name: (0, "right") for name in row.outputs[1:]})
            if row.target_lengths:
                fills[row.target_lengths] = (None, None)  # one number per item
        names = list(dict.fromkeys(name for encoding in encodings for name in encoding))
        unknown = [name for name in names if name not in fills]
        if unknown:
            raise ValueError(
                f"`encodings` hold {unknown}, which `pad` cannot batch; expected names among {list(fills)}."
            )
        data = {}
        for name in names:
            tensors = [torch.as_tensor(encoding[name]) for encoding in encodings if name in encoding]
            data[name] = padded_cat(tensors, *fills[name], name)
        return BatchFeature(data)

    def _load(
        self,
        row: ProcessorModality,
        item,
        name: str,
        num_frames: int | None = None,
        fps: float | None = None,
        do_sample_frames: bool | None = None,
    ):
        """One item through its row's loader, here so that errors name the processor's argument."""
        sub_processor = getattr(self, row.sub_processor)
        if row.loader == "image":
            return checked_image(item, name)
        if row.loader == "audio":
            return load_audio(item, target_sampling_rate=sub_processor.sampling_rate, name=name)
        if row.loader == "video" and is_encoded_video(item):
            if do_sample_frames is False:
                return load_video_frames(item, every_frame, name)
            if num_frames is None and fps is None:
                num_frames = getattr(sub_processor, "num_frames", None)
            return load_video_frames(
                item, functools.partial(sub_processor.sample_frames, num_frames=num_frames, fps=fps), name
            )
        return item

    def _tokens_per_item(self, modality: str, prepared: dict[str, torch.Tensor]) -> list[int]:
        """Interface outputs per item: its queries, times its frames or real windows."""
        row = MODALITIES[modality]
        media = prepared[row.outputs[0]]
        if row.layout == "single":
            windows = [1] * len(media)
        elif len(row.outputs) > 1:  # a mask of real windows
            windows = prepared[row.outputs[1]].sum(1).tolist()
        else:
            windows = [media.shape[1]] * len(media)
        return [self._queries(modality) * count for count in windows]

    def _audio_windows_of(self, num_samples: int, max_windows: int | None) -> int:
        """Real windows `_audio_windows` gives a sound of `num_samples` samples."""
        extractor = self.audio_feature_extractor
        if hasattr(extractor, "windows_of"):  # the extractor windows itself (BEATs)
            return extractor.windows_of(num_samples, max_windows)
        window_samples = round(self.resolved_audio_window_seconds * extractor.sampling_rate)
        windows = max(1, math.ceil(num_samples / window_samples))  # as `split_waveform` cuts
        return windows if max_windows is None else min(windows, max_windows)

    def _audio_windows(self, waveforms: list, max_windows: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(audios, windows, *window_input) features and the (audios, windows) mask of real windows."""
        extractor = self.audio_feature_extractor
        if "window_mask" in extractor.model_input_names:  # the extractor windows itself (BEATs)
            features = extractor(waveforms, max_windows=max_windows, return_tensors="pt")
            return features["input_features"], features["window_mask"]
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
        audio_features = window_features.new_full(
            (len(clips), num_windows, *window_features.shape[1:]),
            float(getattr(extractor, "padding_value", 0.0)),
        )
        audio_features[window_mask.bool()] = window_features  # (audios, windows, *window_input)
        return audio_features, window_mask

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

    def _speech_features(
        self, waveforms: list, row: ProcessorModality, transcripts: list[str] | None
    ) -> dict:
        extractor = getattr(self, row.sub_processor)
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
        media_name, mask_name = row.outputs
        data = {media_name: features[main_input], mask_name: features["attention_mask"]}
        if transcripts is not None:
            data[row.target_lengths] = self.transcript_lengths(transcripts, len(waveforms))
        return data

    def transcript_lengths(self, transcripts: list[str], items: int) -> torch.Tensor:
        """CIF's target lengths: the LLM tokens of each transcript."""
        if len(transcripts) != items:
            raise ValueError(
                f"`speech_transcripts` must have one entry per speech input: got {len(transcripts)} for {items}."
            )
        return torch.tensor(
            [len(self.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in transcripts]
        )

    def _video_pixels(
        self, videos: list, row: ProcessorModality, num_frames: int | None, **video_kwargs
    ) -> torch.Tensor:
        """(videos, frames, C, H, W) from decoded videos (the loader decoded every file, URL and bytes)."""
        if num_frames is not None:
            video_kwargs["num_frames"] = num_frames
        processor = getattr(self, row.sub_processor)
        return processor(videos, **video_kwargs)[processor.model_input_names[0]]

    def _truncate_left(
        self, sample: dict[str, list], max_length: int, index: int, warn: bool = True
    ) -> dict[str, list]:
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
        if warn:
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
        joined = "\n".join(texts)  # placeholders hold no newline: none spans two samples
        for modality, items in media.items():
            token = placeholder(modality)
            count = joined.count(token)
            if count != len(items):
                raise ValueError(
                    f"The text has {count} {token} placeholder(s) but {len(items)} {modality} input(s) were "
                    f"given in `{MODALITIES[modality].keyword}`; write one {token} per {modality}."
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
            input_ids, offsets, copied = [], [], 0  # text tokens are copied in runs, between placeholders
            for position in placeholder_positions(sample_ids, modality_of):
                input_ids.extend(sample_ids[copied:position])
                if with_offsets:
                    offsets.extend(tuple(offset) for offset in source_offsets[copied:position])
                token_id = sample_ids[position]
                modality = modality_of[token_id]
                # Speech keeps one placeholder: the model splices in as many tokens as CIF fires.
                repeats = next(item_lengths[modality]) if modality in item_lengths else 1
                block = self.cue_token_ids.get(modality, []) + [token_id] * repeats
                input_ids.extend(block)
                if with_offsets:
                    offsets.extend([tuple(source_offsets[position])] * len(block))
                copied = position + 1
            input_ids.extend(sample_ids[copied:])
            if with_offsets:
                offsets.extend(tuple(offset) for offset in source_offsets[copied:])
            sample = {"input_ids": input_ids}
            if with_offsets:
                sample["offset_mapping"] = offsets
            samples.append(sample)
        return samples

    def _pad(self, samples: list[dict[str, list]], padding_side: str, longest: int) -> dict:
        if padding_side not in ("left", "right"):
            raise ValueError(f"`padding_side` must be 'left' or 'right', got {padding_side!r}.")
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.tokenizer.eos_token_id
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

    def _format_texts(self, rules, texts: list[str], instructions, with_offsets: bool) -> tuple[dict, list]:
        """Token ids of each sample as its prompt format assembles them (each piece tokenized on its own), and
        the Q-Former texts the format gives, unless `instructions` are given."""
        if with_offsets:
            raise ValueError(
                f"`return_offsets_mapping` (assistant masks) needs the 'parts' prompt format; this processor's is "
                f"{rules.name!r}, which reorders the text."
            )
        input_ids = [
            encode_pieces(self.tokenizer, rules.pieces(text), self.placeholder_ids) for text in texts
        ]
        if instructions is None:
            instructions = [rules.qformer_text(text) for text in texts]
        return {"input_ids": input_ids}, instructions

    def _tokenize_instructions(self, texts: list[str], instructions: str | list[str] | None) -> dict:
        if instructions is None:
            pattern = "|".join(re.escape(placeholder(m)) for m in MODALITIES)
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
        )  # lists: the processor's `BatchFeature` makes the tensors of the asked type, in one pass with the rest
        return {
            "qformer_input_ids": encoding["input_ids"],
            "qformer_attention_mask": encoding["attention_mask"],
        }

    def _multimodal_inputs_from_conversations(
        self, conversations, audio_loading_params, load_audio_from_video=False
    ):
        """Images and videos as `ProcessorMixin` extracts them; every other modality as its parts hold it,
        for this processor's own loaders. Audio parts are hidden from `ProcessorMixin`, which would decode
        them with transformers' loader."""
        if load_audio_from_video:
            raise ValueError(
                "`load_audio_from_video=True` is not supported: give the sound track as its own "
                "{'type': 'audio', 'audio': ...} part."
            )
        ours = [modality for modality, row in MODALITIES.items() if not row.chat_via_transformers]
        visible = [[without_content_types(message, ours) for message in c] for c in conversations]
        images, videos, _, extra = super()._multimodal_inputs_from_conversations(
            visible, audio_loading_params
        )
        if self.prompt_format["name"] == "parts":  # the other formats say what the Q-Former reads
            extra["instructions"] = [conversation_instruction(conversation) for conversation in conversations]
        audio = []
        for modality in ours:
            row = MODALITIES[modality]
            items = [item for c in conversations for item in media_of(c, modality, row.chat_keys)]
            if row.keyword == "audio":  # `ProcessorMixin.apply_chat_template` passes `audio=` itself
                audio = items
            elif items:
                extra[row.keyword] = items
        return images, videos, audio, extra

    def apply_chat_template(self, conversation, chat_template: str | None = None, **kwargs):
        """`ProcessorMixin.apply_chat_template`, plus `labels` when `return_assistant_tokens_mask=True`:
        the assistant tokens, everything else (prompt, placeholders, padding) set to -100.

        Messages without a role or with a role the template does not render, and content parts of an
        unknown type, are a ValueError (the template would drop them silently). A
        conversation without assistant tokens cannot be trained on (its labels would all be -100): with
        `return_assistant_tokens_mask=True` it is a ValueError."""
        check_conversation(conversation, ("text", *MODALITIES))
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
    def padding_side(self) -> str:
        """The side text is padded on when a call does not say (`padding_side=`)."""
        return self.text_kwargs["padding_side"]

    @property
    def model_input_names(self) -> list[str]:
        """Text and Q-Former inputs, then the tensors of each modality this processor serves (`modalities`;
        all when not set), as the modality table names its sub-processor's outputs."""
        served = self.modalities if self.modalities is not None else list(MODALITIES)
        return [
            *TEXT_INPUT_NAMES,
            *(name for m in MODALITIES if m in served for name in MODALITIES[m].outputs),
        ]


KNOWN_CALL_OPTIONS = option_names(XLLMProcessorKwargs)  # merged by `_merge_kwargs`, never media


def check_keyword_typos(kwargs: dict) -> None:
    """Processors accept extra keywords for their sub-processors, so media under a misspelt keyword
    (`image=`, `pointclouds=`) would be dropped silently: a keyword close to one of ours is a TypeError."""
    for name in kwargs.keys() - KNOWN_CALL_OPTIONS:
        close = difflib.get_close_matches(name, call_keywords(), n=1, cutoff=0.8)
        if close:
            raise TypeError(
                f"XLLMProcessor got an unexpected keyword argument `{name}` (did you mean `{close[0]}`?); media "
                f"keywords are {list(keywords())}."
            )


def every_frame(metadata, **kwargs) -> list[int]:
    """Frame indices of a whole video (`do_sample_frames=False`)."""
    return list(range(metadata.total_num_frames))


def padded_cat(tensors: list[torch.Tensor], value: float | None, side: str | None, name: str) -> torch.Tensor:
    """Concatenate along the first axis, padding the second to the longest on `side` (`side=None`: no
    padding); every other axis must agree (images of one size, videos of one frame count)."""
    if all(t.shape[1:] == tensors[0].shape[1:] for t in tensors):
        return torch.cat(tensors)
    if side is None or any(t.shape[2:] != tensors[0].shape[2:] for t in tensors):
        shapes = [tuple(t.shape) for t in tensors]
        raise ValueError(f"`{name}` of the encodings differ in shape and cannot be batched: {shapes}.")
    longest = max(t.shape[1] for t in tensors)
    padded = []
    for tensor in tensors:
        padding = tensor.new_full((tensor.shape[0], longest - tensor.shape[1], *tensor.shape[2:]), value)
        padded.append(torch.cat([padding, tensor] if side == "left" else [tensor, padding], dim=1))
    return torch.cat(padded)


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


__all__ = ["XLLMProcessor"]
