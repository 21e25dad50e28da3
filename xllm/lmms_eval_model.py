"""lmms-eval's model `xllm`: lmms-eval's tasks on any saved X-LLM checkpoint.

lmms-eval (0.7.3) finds external models through the `lmms_eval.models` entry-point group
(`lmms_eval/models/registry_v2.py:139`, `load_entrypoint_manifests`); our pyproject.toml points it at
`manifest`, so `lmms-eval --model xllm --model_args pretrained=FOLDER` runs any of its tasks. The model is a
"simple" one (`is_simple = True`): lmms-eval's chat-message tasks are generation only
(`lmms_eval/api/task.py:1848`), and multiple-choice tasks need `loglikelihood`.

What lmms-eval hands over, and what it becomes (`content_part`): each request carries the task's context
string and its `doc_to_visual`, called on the document to get the media: PIL images, file paths (image,
video, audio or point-cloud files by suffix; lmms-eval's convention: any other path is a video), audio
dicts `{"array", "sampling_rate"}` and the torchcodec decoders `datasets` columns decode to. One user
turn holds the media first, then the context (as in training and `xllm evaluate`), or each item where the
context writes its placeholder (`<image>`: interleaved tasks), rendered by the processor's chat template
and prompt format; the Q-Formers read the context.

The three request types, over the batched code `xllm evaluate` runs:

* `generate_until`: `generate_answers`, one batch per set of generation settings, request order kept; the
  task's `generation_kwargs` are laid over the checkpoint's `GenerationConfig` (`temperature: 0` means
  greedy), and the answer is cut before the first of its `until` strings.
* `loglikelihood`: `candidate_scores` (the prompt's KV cache shared by its candidates; candidates tokenized
  alone, as LAVIS and `xllm evaluate --classify-by likelihood` do). The first number of each answer is the
  NEGATIVE summed log-likelihood of the continuation: lmms-eval's multiple-choice scoring takes the choice
  of lowest value (`pred = np.argmin(lls)`, `lmms_eval/api/task.py:1624`) because its own
  models return a loss (lmms-eval issue #370), although `lmms.loglikelihood`'s docstring says
  log-probability. With the sum, `acc` picks the choice of highest log-likelihood (as `xllm evaluate`)
  and `acc_norm` divides it by the choice's length in characters (lm-eval's `acc_norm`).
* `generate_until_multi_round`: the task's `doc_to_text` protocol (`round_idx`, `previous_output`,
  `previous_round_info`; a 5-tuple back, the third item saying stop), each round one batched generation
  over the documents still running; the answer of a document is the list of its rounds' answers.
"""

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import PIL.Image
from lmms_eval.api.instance import GenerationResult, Instance
from lmms_eval.api.model import lmms

from xllm.evaluation.generation import generate_answers
from xllm.evaluation.likelihood import candidate_scores
from xllm.evaluation.prompts import ChatPrompt
from xllm.evaluation.runner import load_evaluated_model
from xllm.processing.processor_modalities import AUDIO_FILE_SUFFIXES, MODALITIES, placeholder

MODEL_NAME = "xllm"
# Generation settings of lmms-eval tasks that steer other models or lmms-eval itself, not `generate`:
# LLaVA's image preprocessing (our processor's image processor decides) and lmms-eval's own modes.
NOT_FOR_GENERATE = ("image_aspect_ratio", "visual_cot", "max_agentic_steps")
DTYPES = ("auto", "float32", "bfloat16", "float16")
# The placeholders (`<image>`, `<video>`, ...) a task's text may write where its media go.
PLACEHOLDERS = re.compile("(" + "|".join(re.escape(placeholder(m)) for m in MODALITIES) + ")")


class XLLMLmmsEval(lmms):
    """An X-LLM checkpoint as an lmms-eval model (`--model xllm`).

    Model args: `pretrained` (a saved X-LLM folder, required), `prompt_format` (`parts`, `lavis` or
    `x-llm`: overrides the processor's saved one), `batch_size` (lmms-eval's `--batch_size`), `device`
    (default: cuda when available), `dtype` (`auto`, `float32`, `bfloat16`, `float16`; default: as saved),
    `audio_modality` (`speech` or `audio`: the interface audio goes to; default the processor's rule,
    speech only for a model with speech and no audio interface).
    """

    is_simple = True

    def __init__(
        self,
        pretrained: str | None = None,
        prompt_format: str | None = None,
        batch_size: int | str = 1,
        device: str | None = None,
        dtype: str | None = None,
        audio_modality: str | None = None,
        max_batch_size: int | None = None,
        **unknown,
    ) -> None:
        super().__init__()
        if unknown:
            raise ValueError(
                f"Unknown model args {sorted(unknown)} for --model {MODEL_NAME}; it takes pretrained, "
                "prompt_format, batch_size, device, dtype and audio_modality."
            )
        if not pretrained:
            raise ValueError(f"--model {MODEL_NAME} needs pretrained=FOLDER (a saved X-LLM model), got none.")
        self.batch_size = positive_batch_size(batch_size)
        if max_batch_size is not None:
            raise ValueError(
                f"--max_batch_size is for --batch_size auto, which {MODEL_NAME} does not take; got {max_batch_size}."
            )
        if dtype is not None and dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}.")
        if audio_modality not in (None, "speech", "audio"):
            raise ValueError(f"audio_modality must be 'speech' or 'audio', got {audio_modality!r}.")
        processor_kwargs = {} if prompt_format is None else {"prompt_format": prompt_format}
        self.model, self.processor = load_evaluated_model(
            pretrained, device, dtype=dtype, processor_kwargs=processor_kwargs
        )
        self.modalities = list(self.processor.modalities or MODALITIES)
        if audio_modality is None:
            audio_modality = "speech" if self.processor.audio_goes_to_speech else "audio"
        self.audio_modality = audio_modality

    @property
    def device(self):
        return self.model.device

    # --- prompts ---------------------------------------------------------------------------------------

    def document(self, task: str, split: str, doc_id: int) -> dict:
        return self.task_dict[task][split][doc_id]

    def prompt(self, context: str, visuals: list | None) -> ChatPrompt:
        """One user turn: the media, then the context; or, when the context writes placeholders
        (`<image>`, as interleaved tasks such as MMMU-Pro do), each item where its placeholder is."""
        parts = [content_part(visual, self.audio_modality) for visual in visuals or ()]
        missing = sorted({part["type"] for part in parts} - set(self.modalities))
        if missing:
            raise ValueError(
                f"This task gives {missing} media, which the model has no interface for; it has {self.modalities}."
            )
        pieces = PLACEHOLDERS.split(context)  # text, placeholder, text, ...
        if len(pieces) == 1:
            return ChatPrompt([{"role": "user", "content": [*parts, {"type": "text", "text": context}]}])
        written = [piece[1:-1] for piece in pieces[1::2]]
        if sorted(written) != sorted(part["type"] for part in parts):
            raise ValueError(
                f"The task's text writes placeholders for {written} but gives {[p['type'] for p in parts]} media; "
                "each item needs its placeholder, or none of them one."
            )
        pending = {modality: [p for p in parts if p["type"] == modality] for modality in written}
        content = []
        for index, piece in enumerate(pieces):
            if index % 2:
                content.append(pending[piece[1:-1]].pop(0))
            elif piece:
                content.append({"type": "text", "text": piece})
        return ChatPrompt([{"role": "user", "content": content}])

    def document_prompt(
        self, context: str, doc_to_visual: Callable | None, task: str, split: str, doc_id: int
    ) -> ChatPrompt:
        visuals = doc_to_visual(self.document(task, split, doc_id)) if doc_to_visual is not None else None
        return self.prompt(context, visuals)

    # --- lmms-eval's request types -------------------------------------------------------------------

    def generate_until(self, requests: list[Instance]) -> list[str]:
        """The generated answer of each request, cut before the first of its `until` strings."""
        prompts = [self.document_prompt(c, v, t, s, d) for c, _, v, d, t, s in (r.args for r in requests)]
        return self.generate(prompts, [request.args[1] for request in requests])

    def generate(self, prompts: list[ChatPrompt], all_kwargs: list[dict]) -> list[str]:
        """Batched generation, one run per distinct set of generation kwargs, answers in request order."""
        answers: list[str | None] = [None] * len(prompts)
        groups: dict[str, list[int]] = {}
        for index, kwargs in enumerate(all_kwargs):
            groups.setdefault(json.dumps(kwargs, sort_keys=True, default=str), []).append(index)
        for indices in groups.values():
            settings, until = generation_settings(all_kwargs[indices[0]])
            texts = generate_answers(
                self.model, self.processor, [prompts[i] for i in indices], settings, self.batch_size
            )
            for index, text in zip(indices, texts, strict=True):
                answers[index] = cut_at(text, until)
        return answers

    def loglikelihood(self, requests: list[Instance]) -> list[GenerationResult]:
        """(negative summed log-likelihood of the continuation, whether greedy decoding writes it) per
        request; see the module docstring for the sign. Requests with the same context and media share
        one prompt, and prompts with the same continuations are scored together in batches."""
        keys, continuations, prompt_args = [], [], {}
        for request in requests:
            if len(request.args) == 2:  # (context, continuation): acc_mutual_info's text-only requests
                context, continuation = request.args
                key = (context,)
                prompt_args[key] = (context, None, None, None, None)
            else:
                context, target, doc_to_visual, doc_id, task, split = request.args
                continuation = (
                    target if isinstance(target, str) else target(self.document(task, split, doc_id))
                )
                key = (task, split, doc_id, context)
                prompt_args[key] = (context, doc_to_visual, task, split, doc_id)
            if not isinstance(continuation, str):
                raise ValueError(
                    f"A loglikelihood request needs a string continuation, got {type(continuation).__name__} "
                    f"{continuation!r} (the task's doc_to_target or doc_to_choice)."
                )
            keys.append(key)
            continuations.append(continuation)
        candidates_of: dict[tuple, list[str]] = {}
        for key, continuation in zip(keys, continuations, strict=True):
            if continuation not in candidates_of.setdefault(key, []):
                candidates_of[key].append(continuation)
        prompts_of: dict[tuple[str, ...], list[tuple]] = {}  # the prompts that share a list of candidates
        for key, candidates in candidates_of.items():
            prompts_of.setdefault(tuple(candidates), []).append(key)
        results: dict[tuple, tuple[float, bool]] = {}
        for candidates, group in prompts_of.items():
            prompts = [self.document_prompt(*prompt_args[key]) for key in group]
            scores = candidate_scores(self.model, self.processor, prompts, list(candidates), self.batch_size)
            for row, key in enumerate(group):
                for column, candidate in enumerate(candidates):
                    nll = -scores.log_likelihood[row, column].item()
                    results[key, candidate] = (nll, bool(scores.greedy[row, column]))
        return [passed_through(results[key, c]) for key, c in zip(keys, continuations, strict=True)]

    def generate_until_multi_round(self, requests: list[Instance]) -> list[list[str]]:
        """Each document's rounds: round 0 asks the context, then its `doc_to_text` gives each next round's
        media and text from the answers so far, until it says stop; the answers of all rounds, per request."""
        dialogues = []
        for request in requests:
            context, kwargs, doc_to_visual, doc_to_text, doc_id, task, split = request.args
            prompt = self.document_prompt(context, doc_to_visual, task, split, doc_id)
            dialogues.append(Dialogue(self.document(task, split, doc_id), doc_to_text, kwargs, prompt))
        round_index = 0
        while running := [dialogue for dialogue in dialogues if not dialogue.done]:
            answers = self.generate([d.prompt for d in running], [d.generation_kwargs for d in running])
            round_index += 1
            for dialogue, answer in zip(running, answers, strict=True):
                dialogue.answers.append(answer)
                step = dialogue.doc_to_text(
                    dialogue.document,
                    previous_output=dialogue.answers,
                    round_idx=round_index,
                    previous_round_info=dialogue.info,
                )
                if not (isinstance(step, tuple) and len(step) == 5):
                    raise ValueError(
                        "A multi-round task's doc_to_text must return (visuals, text, stop, answers, info) for "
                        f"round {round_index}, got {type(step).__name__}."
                    )
                visuals, text, stop, answers_so_far, dialogue.info = step
                if stop:
                    dialogue.done = True
                    if answers_so_far is not None:  # the task's own record of the rounds wins
                        dialogue.answers = list(answers_so_far)
                else:
                    dialogue.prompt = self.prompt(text, visuals)
        return [dialogue.answers for dialogue in dialogues]


@dataclass
class Dialogue:
    """One document of a multi-round task: its next prompt, the answers so far, the task's round state."""

    document: dict
    doc_to_text: Callable
    generation_kwargs: dict
    prompt: ChatPrompt
    answers: list[str] = field(default_factory=list)
    info: object = None
    done: bool = False


def positive_batch_size(batch_size) -> int:
    """lmms-eval's `--batch_size` (an int or its string); `auto` is not supported."""
    if isinstance(batch_size, str) and batch_size.isdigit():
        batch_size = int(batch_size)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer (no 'auto'), got {batch_size!r}.")
    return batch_size


def content_part(visual, audio_modality: str) -> dict:
    """The chat content part of one item that a task's `doc_to_visual` returns."""
    if isinstance(visual, PIL.Image.Image):
        return {"type": "image", "image": visual}
    if isinstance(visual, (str, os.PathLike)):
        suffix = os.path.splitext(os.fspath(visual))[1].lower()
        if suffix in AUDIO_FILE_SUFFIXES:
            modality = audio_modality
        else:
            by_suffix = [m for m, row in MODALITIES.items() if suffix in row.file_suffixes]
            modality = by_suffix[0] if by_suffix else "video"  # lmms-eval's convention for other paths
        return {"type": modality, MODALITIES[modality].chat_keys[0]: os.fspath(visual)}
    if isinstance(visual, dict) and "array" in visual and "sampling_rate" in visual:
        return {"type": audio_modality, MODALITIES[audio_modality].chat_keys[0]: visual}
    from torchcodec.decoders import AudioDecoder, VideoDecoder  # what `datasets.Audio` / `Video` decode to

    if isinstance(visual, (AudioDecoder, VideoDecoder)):
        modality = audio_modality if isinstance(visual, AudioDecoder) else "video"
        return {"type": modality, MODALITIES[modality].chat_keys[0]: visual}
    raise ValueError(
        "A task's doc_to_visual must give PIL images, media file paths, audio dicts {'array', 'sampling_rate'} "
        f"or torchcodec decoders; got {type(visual).__name__}."
    )


def generation_settings(kwargs: dict) -> tuple[dict, list[str]]:
    """A task's `generation_kwargs` as `generate` settings, and its `until` strings."""
    settings = {k: v for k, v in kwargs.items() if v is not None and k not in NOT_FOR_GENERATE}
    until = settings.pop("until", [])
    until = [until] if isinstance(until, str) else list(until)
    if settings.get("temperature") == 0:  # lmms-eval's way of asking for greedy decoding
        del settings["temperature"]
        settings["do_sample"] = False
    return settings, until


def cut_at(text: str, until: list[str]) -> str:
    """The text before the first occurrence of any of the stop strings (lm-eval's post-hoc cut)."""
    for stop in until:
        if stop:
            text = text.split(stop)[0]
    return text


def passed_through(value: tuple[float, bool]) -> GenerationResult:
    """A loglikelihood answer wrapped so that lmms-eval 0.7.3 keeps it a tuple: its evaluator passes every
    answer through `unwrap_generation_output` (`lmms_eval/api/instance.py:71`), which returns `str(answer)`
    for anything but text, `GenerationResult`, `(text, counts)` and lists of text, so a bare `(float, bool)`
    would reach multiple-choice scoring as the string "(-1.5, True)" (and fail there: task.py:1606); a
    `GenerationResult`'s `text` is handed on as it is."""
    return GenerationResult(text=value)


def manifest():
    """What the `lmms_eval.models` entry point gives lmms-eval's registry: the model's name and class.

    A function, so that `lmms_eval.models` (whose import builds the registry and loads the entry points) is
    imported only when lmms-eval asks: importing this module first must not load it half-way."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_NAME, simple_class_path=f"{__name__}.XLLMLmmsEval")


__all__ = ["MODEL_NAME", "XLLMLmmsEval", "content_part", "generation_settings", "manifest"]
