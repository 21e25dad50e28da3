"""Stage 1: interface pre-training against its own frozen encoder, without the LLM.

For a Q-Former (`QFormerPretrainingHeads`), the three BLIP-2 stage-1 objectives on (media, text) pairs:

* contrastive (ITC): query outputs vs. the text's [CLS], similarity = max over queries;
* matching (ITM): binary match / no match on [queries; text] with hard negatives sampled from the
  contrastive similarities;
* media-grounded generation (ITG): the text decoded causally, every text token seeing all queries.

The heads used only here (projections, matching head, LM head tied to the word embeddings) live in
`QFormerPretrainingHeads`; the trainer saves the interface alone (`save_pretrained`), which
`load_interface_checkpoint` puts into a full model for stage 2.

For the speech C-Former (`CFormerPretrainingHeads`): speech recognition through CIF. CIF fires as
many tokens as the transcript has (in the LLM tokenizer's vocabulary, the tokens the C-Former stands
in for in stages 2 and 3); a linear head on each token's C-Former state predicts that token
(cross-entropy), plus CIF's quantity loss, plus optionally CTC on the encoder frames.

Each interface kind maps to its wrapper in `PRETRAINING_WRAPPERS`.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Trainer
from transformers.modeling_outputs import ModelOutput

from xllm.modeling_xllm.modeling_speech_encoder import encoder_input_name, speech_frame_mask
from xllm.modeling_xllm.modeling_xllm import select_encoder_features

from .data import example_conversation
from .stages import StageTrainingMixin, unwrap_peft

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


class FrozenEncoderHeads(nn.Module):
    """Stage-1 heads around an interface and its frozen encoder; the encoder stays in eval mode when
    the heads train (as in BLIP-2), so its dropout is off and its BatchNorm statistics are fixed."""

    def train(self, mode: bool = True) -> "FrozenEncoderHeads":
        super().train(mode)
        self.encoder.eval()
        return self


class QFormerPretrainingHeads(FrozenEncoderHeads):
    """A Q-Former interface, its frozen encoder and the BLIP-2 stage-1 heads; `forward` returns the
    sum of the three losses and each term."""

    def __init__(self, interface: nn.Module, encoder: nn.Module, embed_dim: int = 256):
        super().__init__()
        self.interface = interface
        self.encoder = encoder
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
        return cls(model.interfaces[modality], model.encoder_for(modality))

    def encode(self, pixel_values: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            outputs = self.encoder(pixel_values=pixel_values, output_hidden_states=True, return_dict=True)
        features = select_encoder_features(outputs.hidden_states, self.interface.config)
        return self.interface.encoder_layer_norm(features)  # (batch, encoder_tokens, encoder_width)

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        features = self.encode(pixel_values)
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

    def __init__(self, interface: nn.Module, encoder: nn.Module, vocab_size: int, ctc_weight: float = 0.0):
        super().__init__()
        if ctc_weight < 0:
            raise ValueError(f"`ctc_weight` must be >= 0, got {ctc_weight}.")
        self.interface = interface
        self.encoder = encoder
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
            model.encoder_for(modality),
            model.config.text_config.vocab_size,
            ctc_weight,
        )

    def encode(self, speech_features: torch.Tensor, speech_attention_mask: torch.Tensor | None):
        """Encoder frames (items, frames, encoder_width), as the model's speech path reads them, and
        their (items, frames) mask of real frames."""
        inputs = {encoder_input_name(self.encoder): speech_features.to(self.encoder.dtype)}
        if speech_attention_mask is not None:
            inputs["attention_mask"] = speech_attention_mask
        with torch.no_grad():
            outputs = self.encoder(**inputs, output_hidden_states=True, return_dict=True)
        frames = select_encoder_features(outputs.hidden_states, self.interface.config)
        return frames, speech_frame_mask(
            self.encoder, speech_attention_mask, frames.shape[1], frames.shape[0]
        )

    def forward(
        self,
        speech_features: torch.Tensor,
        speech_target_lengths: torch.Tensor,
        labels: torch.Tensor,
        speech_attention_mask: torch.Tensor | None = None,
    ) -> PretrainingOutput:
        """labels (items, max_transcript_tokens): transcript token ids, -100 beyond each length;
        speech_target_lengths (items,): the transcripts' token counts, so CIF fires one token per label."""
        frames, frame_mask = self.encode(speech_features, speech_attention_mask)
        cformer = self.interface(frames, frame_mask, speech_target_lengths)
        logits = self.token_head(cformer.hidden_states)  # (items, fired tokens, vocab)
        targets = labels[:, : logits.shape[1]]
        if targets.shape[1] != logits.shape[1]:
            raise ValueError(
                f"CIF fired {logits.shape[1]} tokens but `labels` hold {labels.shape[1]}; "
                "`speech_target_lengths` must count the tokens of `labels`."
            )
        terms = {
            "asr": F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100),
            "quantity": self.interface.config.quantity_loss_weight * cformer.quantity_loss,
        }
        if self.ctc_head is not None:
            terms["ctc"] = self.ctc_weight * self.ctc_loss(frames, frame_mask, labels, speech_target_lengths)
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


PRETRAINING_WRAPPERS = {"qformer": QFormerPretrainingHeads, "cformer": CFormerPretrainingHeads}


def build_pretraining_model(model: nn.Module, modality: str, **wrapper_kwargs) -> nn.Module:
    """The stage-1 wrapper of `modality`'s interface, chosen by the interface's kind;
    `wrapper_kwargs` go to its `for_model` (e.g. `ctc_weight` for the C-Former)."""
    base = unwrap_peft(model).model
    if modality not in base.interfaces:
        raise ValueError(
            f"`modality` must be one of the model's interfaces {list(base.interfaces)}, got {modality!r}."
        )
    interface = base.interfaces[modality]
    wrapper = PRETRAINING_WRAPPERS.get(interface.config.kind)
    if wrapper is None:
        raise ValueError(f"No stage-1 objectives for interface kind {interface.config.kind!r} yet.")
    return wrapper.for_model(base, modality, **wrapper_kwargs)


def example_caption(example: dict, text_column: str) -> str:
    """The caption (or transcript) of a stage-1 example: its `text_column`, else the text of the
    last assistant turn of its chat, so the stage-2/3 manifests serve stage 1 unchanged."""
    if example.get(text_column) is not None:
        return example[text_column]
    answers = [message for message in example_conversation(example) if message["role"] == "assistant"]
    if not answers:
        raise ValueError(
            f"A stage-1 example needs a {text_column!r} column or an assistant turn; got {sorted(example)}."
        )
    content = answers[-1]["content"]
    if isinstance(content, str):
        return content
    return " ".join(part["text"] for part in content if part.get("type") == "text")


class PretrainingCollator:
    """(media, caption) examples -> encoder pixels and the caption in the Q-Former's vocabulary."""

    def __init__(
        self, processor, media_column: str = "images", text_column: str = "response", max_length: int = 64
    ):
        self.processor = processor
        self.media_column = media_column
        self.text_column = text_column
        self.max_length = max_length

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        media = [example[self.media_column] for example in examples]
        texts = [example_caption(example, self.text_column) for example in examples]
        pixel_values = self.processor.image_processor(media, return_tensors="pt")["pixel_values"]
        text = self.processor.qformer_tokenizer(
            texts, padding="longest", truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {
            "pixel_values": pixel_values,
            "input_ids": text["input_ids"],
            "attention_mask": text["attention_mask"],
        }


class SpeechRecognitionCollator:
    """(speech, transcript) examples -> speech encoder input, CIF target lengths and the transcript
    tokens (LLM tokenizer, -100 padding) for `CFormerPretrainingHeads`."""

    def __init__(self, processor, media_column: str = "speech", text_column: str = "response"):
        self.processor = processor
        self.media_column = media_column
        self.text_column = text_column

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        speech = [example[self.media_column] for example in examples]
        transcripts = [example_caption(example, self.text_column) for example in examples]
        features = self.processor(
            text=["<speech>"] * len(examples), speech=speech, speech_transcripts=transcripts
        )
        token_ids = self.processor.tokenizer(transcripts, add_special_tokens=False)["input_ids"]
        longest = max(len(ids) for ids in token_ids)
        labels = torch.tensor([ids + [-100] * (longest - len(ids)) for ids in token_ids])
        return {
            "speech_features": features["speech_features"],
            "speech_attention_mask": features["speech_attention_mask"],
            "speech_target_lengths": features["speech_target_lengths"],
            "labels": labels,
        }


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
        model.encoder.requires_grad_(False)
        model.interface.adapter.requires_grad_(False)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        steps = self.current_gradient_accumulation_steps if model.training else 1
        self.record_loss_terms({name: value / steps for name, value in outputs.loss_terms.items()})
        loss = outputs.loss / steps
        return (loss, outputs) if return_outputs else loss

    def export_model(self, model: nn.Module, output_dir: str) -> None:
        model.interface.save_pretrained(output_dir)


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
    "PretrainingCollator",
    "SpeechRecognitionCollator",
    "QFormerPretrainingHeads",
    "build_pretraining_model",
    "causal_text_mask",
    "same_text_pairs",
    "load_interface_checkpoint",
]
