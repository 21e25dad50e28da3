"""Stage 1, interface pre-training: each interface against its own frozen encoder, without the LLM.

For a Q-Former (`QFormerPretrainingHeads`, any fixed-length modality), the three BLIP-2 stage-1
objectives on (media, caption) pairs:

* contrastive (ITC): query outputs vs. the caption's [CLS], similarity = max over queries;
* matching (ITM): binary match / no match on [queries; caption] with hard negatives sampled from the
  contrastive similarities;
* media-grounded generation (ITG): the caption decoded causally, every text token seeing all queries.

The objectives read one encoder input at a time: an image or a point cloud is one, a video gives one
per frame and a sound one per window, each paired with the item's caption. Frames and windows of one
item share its caption, so they are positives of each other and never contrastive or matching
negatives (`same_text_pairs`).

For the speech C-Former (`CFormerPretrainingHeads`): speech recognition through CIF. CIF fires as
many tokens as the transcript has (in the LLM tokenizer's vocabulary, the tokens the C-Former stands
in for in stages 2 and 3); a linear head on each token's C-Former state predicts that token
(cross-entropy), plus CIF's quantity loss, plus optionally CTC on the encoder frames.

Both read their encoder through `modeling_media.encode_media`, the path the composite model uses. The
heads used only here live in the wrappers; the trainer saves the interface alone (`save_pretrained`),
which `load_interface_checkpoint` puts into a full model for stage 2. The interface kind decides the
wrapper and its collator (`STAGE_ONE`).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Trainer
from transformers.modeling_outputs import ModelOutput

from xllm.manifests import decoded_media, example_answer
from xllm.modeling_xllm.model_modalities import model_modality
from xllm.modeling_xllm.modeling_media import encode_media, encoded_from_cache
from xllm.processing.processor_modalities import processor_modality

from .stage_training import StageTrainingMixin, unwrap_peft

TEMPERATURE_RANGE = (0.001, 0.5)  # BLIP-2 clamps its learned contrastive temperature to this range


@dataclass
class PretrainingOutput(ModelOutput):
    loss: torch.Tensor | None = None
    loss_terms: dict[str, torch.Tensor] | None = None


def causal_text_mask(text_mask: torch.Tensor, num_queries: int, dtype: torch.dtype) -> torch.Tensor:
    """Additive (batch, 1, queries + text, queries + text) mask for generation: queries see only
    queries; text tokens see every query and the earlier real text tokens."""
    batch, text_length = text_mask.shape
    length = num_queries + text_length
    allowed = torch.zeros(batch, length, length, dtype=torch.bool, device=text_mask.device)
    allowed[:, :num_queries, :num_queries] = True
    allowed[:, num_queries:, :num_queries] = True
    causal = torch.ones(text_length, text_length, dtype=torch.bool, device=text_mask.device).tril()
    allowed[:, num_queries:, num_queries:] = causal & text_mask.bool()[:, None, :]
    return torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)[:, None]


def same_text_pairs(input_ids: torch.Tensor) -> torch.Tensor:
    """(batch, batch) True where two captions are identical. A repeated caption in a batch is a
    positive for every media it describes, never a negative (as LAVIS does with image ids)."""
    return (input_ids.unsqueeze(1) == input_ids.unsqueeze(0)).all(dim=-1)


def sample_hard_negatives(similarity: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """For each row, a column that is not one of its positives, drawn with probability
    softmax(similarity)."""
    weights = (similarity.float().softmax(dim=1) + 1e-8).masked_fill(positives, 0)
    return torch.multinomial(weights, 1).squeeze(1)  # (batch,)


def encoded_media(encoder, interface_config, modality: str, media: dict[str, torch.Tensor]):
    """The encoder features a stage-1 batch carries (`encoder_features` from a feature cache) or that its
    frozen encoder gives for its media, through the model's own encoder path."""
    if "encoder_features" in media:
        return encoded_from_cache(modality, interface_config, media["encoder_features"][modality])
    row = model_modality(modality)
    with torch.no_grad():
        return encode_media(
            encoder, interface_config, modality, media[row.input_name], media.get(row.mask_name)
        )


def loaded_encoder(model: nn.Module, modality: str) -> nn.Module | None:
    """The modality's frozen encoder, or None when the model was built without it (cached features)."""
    name = model_modality(modality).encoder
    return None if name in model.encoders_left_out else model.encoders[name]


class FrozenEncoderHeads(nn.Module):
    """Stage-1 heads around an interface and its frozen encoder; the encoder stays in eval mode when
    the heads train (as in BLIP-2), so its dropout is off and its BatchNorm statistics are fixed."""

    def train(self, mode: bool = True) -> "FrozenEncoderHeads":
        super().train(mode)
        if self.encoder is not None:
            self.encoder.eval()
        return self


class QFormerPretrainingHeads(FrozenEncoderHeads):
    """A Q-Former interface, its frozen encoder and the BLIP-2 stage-1 heads; `forward` returns the
    sum of the three losses and each term."""

    def __init__(self, interface: nn.Module, encoder: nn.Module, modality: str, embed_dim: int = 256):
        super().__init__()
        self.interface = interface
        self.encoder = encoder
        self.modality = modality
        width = interface.config.hidden_size
        self.vision_proj = nn.Linear(width, embed_dim)
        self.text_proj = nn.Linear(width, embed_dim)
        self.itm_head = nn.Linear(width, 2)
        self.temperature = nn.Parameter(torch.tensor(0.07))  # BLIP-2's initial value
        self.lm_head = nn.Linear(width, interface.config.vocab_size)
        self.lm_head.weight = interface.qformer.word_embeddings.weight  # tied, as in BLIP-2

    @classmethod
    def for_model(cls, model: nn.Module, modality: str) -> "QFormerPretrainingHeads":
        """The heads of `modality`'s interface in an `XLLMModel`."""
        return cls(model.interfaces[modality], loaded_encoder(model, modality), modality)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **media: torch.Tensor):
        """`media`: the modality's model inputs by their names (`pixel_values`, `pixel_values_videos`,
        `audio_features` with `audio_window_mask`, ...), or its `encoder_features` from a feature cache;
        `input_ids` / `attention_mask`: one caption per item in the Q-Former's vocabulary."""
        encoded = encoded_media(self.encoder, self.interface.config, self.modality, media)
        features = self.interface.encoder_layer_norm(encoded.features)  # (encoder inputs, tokens, width)
        inputs_per_item = encoded.inputs_per_item
        input_ids = input_ids.repeat_interleave(inputs_per_item, dim=0)  # the item's caption per frame
        attention_mask = attention_mask.repeat_interleave(inputs_per_item, dim=0)
        batch = features.shape[0]
        queries = self.interface.query_tokens.expand(batch, -1, -1)  # (batch, queries, width)
        qformer = self.interface.qformer
        query_states = qformer(query_embeds=queries, encoder_hidden_states=features)
        text_states = qformer(input_ids=input_ids, attention_mask=attention_mask)

        media_embeds = F.normalize(self.vision_proj(query_states), dim=-1)  # (batch, queries, embed)
        text_embeds = F.normalize(self.text_proj(text_states[:, 0]), dim=-1)  # (batch, embed)
        with torch.no_grad():
            self.temperature.clamp_(*TEMPERATURE_RANGE)
        # similarity[i, j]: media i vs. text j, the best-matching query of media i.
        similarity = torch.einsum("bqd,td->bqt", media_embeds, text_embeds).amax(dim=1) / self.temperature
        positives = same_text_pairs(input_ids)  # (batch, batch), symmetric
        targets = positives.float() / positives.sum(dim=1, keepdim=True)
        terms = {"itc": (F.cross_entropy(similarity, targets) + F.cross_entropy(similarity.t(), targets)) / 2}
        if not positives.all(dim=1).any():  # every media and every text has a negative in the batch
            terms["itm"] = self.matching_loss(
                queries, features, input_ids, attention_mask, similarity.detach(), positives
            )
        terms["itg"] = self.generation_loss(queries, features, input_ids, attention_mask)
        return PretrainingOutput(loss=sum(terms.values()), loss_terms=terms)

    def matching_loss(
        self, queries, features, input_ids, attention_mask, similarity, positives
    ) -> torch.Tensor:
        """Positives, (negative media, text) and (media, negative text) pairs; mean query output -> 2 classes."""
        batch = queries.shape[0]
        negative_text = sample_hard_negatives(similarity, positives)  # per media
        negative_media = sample_hard_negatives(similarity.t(), positives)  # per text
        text_ids = torch.cat([input_ids, input_ids, input_ids[negative_text]])
        text_mask = torch.cat([attention_mask, attention_mask, attention_mask[negative_text]])
        media = torch.cat([features, features[negative_media], features])
        all_queries = torch.cat([queries] * 3)
        mask = torch.cat([text_mask.new_ones(all_queries.shape[:2]), text_mask], dim=1)
        states = self.interface.qformer(all_queries, text_ids, mask, media)
        logits = self.itm_head(states[:, : queries.shape[1]]).mean(dim=1)  # (3 * batch, 2)
        labels = torch.cat([torch.ones(batch), torch.zeros(2 * batch)]).long().to(logits.device)
        return F.cross_entropy(logits, labels)

    def generation_loss(self, queries, features, input_ids, attention_mask) -> torch.Tensor:
        num_queries = queries.shape[1]
        mask = causal_text_mask(attention_mask, num_queries, queries.dtype)
        states = self.interface.qformer(queries, input_ids, mask, features)
        logits = self.lm_head(states[:, num_queries:-1])  # (batch, text - 1, vocab)
        targets = input_ids[:, 1:].masked_fill(attention_mask[:, 1:] == 0, -100)
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)


class CFormerPretrainingHeads(FrozenEncoderHeads):
    """The C-Former, its frozen speech encoder and a speech-recognition head; `forward` returns the
    sum of the token cross-entropy (`asr`), CIF's weighted quantity loss (`quantity`) and, when
    `ctc_weight > 0`, CTC on the encoder frames (`ctc`)."""

    def __init__(
        self,
        interface: nn.Module,
        encoder: nn.Module,
        modality: str,
        vocab_size: int,
        ctc_weight: float = 0.0,
    ):
        super().__init__()
        if ctc_weight < 0:
            raise ValueError(f"`ctc_weight` must be >= 0, got {ctc_weight}.")
        self.interface = interface
        self.encoder = encoder
        self.modality = modality
        self.vocab_size = vocab_size
        self.ctc_weight = ctc_weight
        self.token_head = nn.Linear(interface.config.hidden_size, vocab_size)
        # CTC needs a blank symbol outside the vocabulary: index `vocab_size`.
        self.ctc_head = (
            nn.Linear(interface.config.encoder_hidden_size, vocab_size + 1) if ctc_weight else None
        )

    @classmethod
    def for_model(cls, model: nn.Module, modality: str, ctc_weight: float = 0.0) -> "CFormerPretrainingHeads":
        """The heads of `modality`'s C-Former in an `XLLMModel`, predicting LLM tokens."""
        return cls(
            model.interfaces[modality],
            loaded_encoder(model, modality),
            modality,
            model.config.text_config.vocab_size,
            ctc_weight,
        )

    def forward(self, labels: torch.Tensor, **media: torch.Tensor) -> PretrainingOutput:
        """labels (items, max_transcript_tokens): transcript token ids, -100 beyond each length; `media`:
        the modality's model inputs by name (`speech_features`, `speech_attention_mask`,
        `speech_target_lengths`: the transcripts' token counts, so CIF fires one token per label)."""
        target_lengths = media[model_modality(self.modality).target_lengths_name]
        encoded = encoded_media(self.encoder, self.interface.config, self.modality, media)
        frames, frame_mask = encoded.features, encoded.frame_mask
        cformer = self.interface(frames, frame_mask, target_lengths)
        logits = self.token_head(cformer.hidden_states)  # (items, fired tokens, vocab)
        targets = labels[:, : logits.shape[1]]
        if targets.shape[1] != logits.shape[1]:
            raise ValueError(
                f"CIF fired {logits.shape[1]} tokens but `labels` hold {labels.shape[1]}; "
                f"`{model_modality(self.modality).target_lengths_name}` must count the tokens of `labels`."
            )
        terms = {
            "asr": F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100),
            "quantity": self.interface.config.quantity_loss_weight * cformer.quantity_loss,
        }
        if self.ctc_head is not None:
            terms["ctc"] = self.ctc_weight * self.ctc_loss(frames, frame_mask, labels, target_lengths)
        return PretrainingOutput(loss=sum(terms.values()), loss_terms=terms)

    def ctc_loss(self, frames, frame_mask, labels, target_lengths) -> torch.Tensor:
        norm_dtype = self.interface.encoder_layer_norm.weight.dtype
        frames = self.interface.encoder_layer_norm(frames.to(norm_dtype))
        log_probs = (
            self.ctc_head(frames).float().log_softmax(-1).transpose(0, 1)
        )  # (frames, items, vocab + 1)
        return F.ctc_loss(
            log_probs,
            labels.clamp(min=0),
            frame_mask.sum(1),
            target_lengths,
            blank=self.vocab_size,
            zero_infinity=True,
        )


def stage_one_media(examples: list[dict], modality: str) -> list:
    """One media item per example, from the modality's column (a path list of one counts as one)."""
    keyword = processor_modality(modality).keyword
    items = []
    for index, example in enumerate(examples):
        item = example.get(keyword)
        if isinstance(item, list):
            if len(item) != 1:
                raise ValueError(
                    f"A stage-1 example pairs one {modality} item with its caption; example {index} has "
                    f"{len(item)} in `{keyword}`."
                )
            item = item[0]
        if item is None:
            raise ValueError(
                f"A stage-1 {modality} example needs a `{keyword}` column; example {index} has none."
            )
        items.append(decoded_media(item))
    return items


def stage_one_inputs(
    processor, modality: str, examples: list[dict], feature_caches=None, transcripts=None
) -> dict:
    """The examples' media as the model takes them: from a feature cache (`encoder_features`, the media
    column read as paths) when one covers the modality, else prepared by the processor."""
    items = stage_one_media(examples, modality)
    if feature_caches is None or modality not in feature_caches.modalities:
        return processor.prepare_media(modality, items, transcripts=transcripts)
    inputs = {
        "encoder_features": {
            modality: feature_caches.encoder_features(modality, [item["path"] for item in items])
        }
    }
    if transcripts is not None:
        inputs[processor_modality(modality).target_lengths] = processor.transcript_lengths(
            transcripts, len(items)
        )
    return inputs


class QFormerPretrainingCollator:
    """(media, caption) examples of one modality -> its model inputs (as the processor prepares them, or
    its cached `encoder_features`) and the caption in the Q-Former's vocabulary."""

    def __init__(
        self,
        processor,
        modality: str = "image",
        text_column: str = "response",
        max_length: int = 64,
        feature_caches=None,
    ):
        self.processor = processor
        self.modality = modality
        self.text_column = text_column
        self.max_length = max_length
        self.feature_caches = feature_caches

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        media = stage_one_inputs(self.processor, self.modality, examples, self.feature_caches)
        texts = [example_answer(example, self.text_column) for example in examples]
        text = self.processor.qformer_tokenizer(
            texts, padding="longest", truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {**media, "input_ids": text["input_ids"], "attention_mask": text["attention_mask"]}


class SpeechRecognitionCollator:
    """(speech, transcript) examples -> speech encoder input (or cached `encoder_features`), CIF target
    lengths and the transcript tokens (LLM tokenizer, -100 padding) for `CFormerPretrainingHeads`."""

    def __init__(
        self, processor, modality: str = "speech", text_column: str = "response", feature_caches=None
    ):
        self.processor = processor
        self.modality = modality
        self.text_column = text_column
        self.feature_caches = feature_caches

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        transcripts = [example_answer(example, self.text_column) for example in examples]
        media = stage_one_inputs(self.processor, self.modality, examples, self.feature_caches, transcripts)
        token_ids = self.processor.tokenizer(transcripts, add_special_tokens=False)["input_ids"]
        longest = max(len(ids) for ids in token_ids)
        labels = torch.tensor([ids + [-100] * (longest - len(ids)) for ids in token_ids])
        return {**media, "labels": labels}


# Interface kind -> its stage-1 wrapper and collator.
STAGE_ONE = {
    "qformer": (QFormerPretrainingHeads, QFormerPretrainingCollator),
    "cformer": (CFormerPretrainingHeads, SpeechRecognitionCollator),
}


def interface_kind(model: nn.Module, modality: str) -> str:
    base = unwrap_peft(model).model
    if modality not in base.interfaces:
        raise ValueError(
            f"`modality` must be one of the model's interfaces {list(base.interfaces)}, got {modality!r}."
        )
    kind = base.interfaces[modality].config.kind
    if kind not in STAGE_ONE:
        raise ValueError(f"No stage-1 objectives for interface kind {kind!r} (the {modality} interface).")
    return kind


def build_pretraining_model(model: nn.Module, modality: str, **wrapper_kwargs) -> nn.Module:
    """The stage-1 wrapper of `modality`'s interface, chosen by the interface's kind;
    `wrapper_kwargs` go to its `for_model` (e.g. `ctc_weight` for the C-Former)."""
    wrapper, _ = STAGE_ONE[interface_kind(model, modality)]
    return wrapper.for_model(unwrap_peft(model).model, modality, **wrapper_kwargs)


def pretraining_collator(
    model: nn.Module, processor, modality: str, text_column: str = "response", feature_caches=None
):
    """The stage-1 collator for `modality`'s interface kind."""
    _, collator = STAGE_ONE[interface_kind(model, modality)]
    return collator(processor, modality=modality, text_column=text_column, feature_caches=feature_caches)


class InterfacePretrainingTrainer(StageTrainingMixin, Trainer):
    """Stage 1: one interface against its frozen encoder, no LLM.

    Takes the full X-LLM model and trains the wrapper of `modality`'s interface. Per-sample terms are
    micro-batch means, divided here by the accumulation steps (`loss_is_scaled_for_ga`); contrastive
    and matching negatives come from the micro-batch. `save_model()` writes the interface alone.
    """

    def __init__(
        self,
        model: nn.Module,
        args=None,
        modality: str = "image",
        wrapper_kwargs: dict | None = None,
        **kwargs,
    ):
        super().__init__(build_pretraining_model(model, modality, **(wrapper_kwargs or {})), args, **kwargs)
        self.loss_is_scaled_for_ga = True

    def set_trainable_parameters(self, model: nn.Module) -> None:
        """Everything but the frozen encoder and the adapter to the LLM (unused without the LLM)."""
        model.requires_grad_(True)
        if model.encoder is not None:
            model.encoder.requires_grad_(False)
        model.interface.adapter.requires_grad_(False)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        steps = self.current_gradient_accumulation_steps if model.training else 1
        self.record_loss_terms({name: value / steps for name, value in outputs.loss_terms.items()})
        loss = outputs.loss / steps
        return (loss, outputs) if return_outputs else loss

    def export_model(self, model: nn.Module, output_dir: str, state_dict: dict | None = None) -> nn.Module:
        """The interface alone (`save_pretrained`), for `load_interface_checkpoint`; returns it.
        `state_dict`: the wrapper's weights gathered from FSDP shards."""
        if state_dict is not None:
            state_dict = {
                k.removeprefix("interface."): v for k, v in state_dict.items() if k.startswith("interface.")
            }
        model.interface.save_pretrained(output_dir, state_dict=state_dict)
        return model.interface


def load_interface_checkpoint(model: nn.Module, modality: str, path: str) -> None:
    """Load a stage-1 interface folder (`save_pretrained`) into `model`'s `modality` interface."""
    interfaces = unwrap_peft(model).model.interfaces
    if modality not in interfaces:
        raise ValueError(
            f"`modality` must be one of the model's interfaces {list(interfaces)}, got {modality!r}."
        )
    target = interfaces[modality]
    target.load_state_dict(type(target).from_pretrained(path).state_dict())  # strict: shapes must match


__all__ = [
    "CFormerPretrainingHeads",
    "InterfacePretrainingTrainer",
    "QFormerPretrainingCollator",
    "QFormerPretrainingHeads",
    "SpeechRecognitionCollator",
    "build_pretraining_model",
    "causal_text_mask",
    "load_interface_checkpoint",
    "pretraining_collator",
    "same_text_pairs",
]
