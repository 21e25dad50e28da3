"""Batched generation over prompts, shared by `xllm evaluate` and the demo.

A prompt is either a chat (`ChatPrompt`: the conversation with its media in the content parts, built
through the processor's chat template, the Q-Former reading the user turns' text) or, for the published
DisCRn protocol only, raw text (`TextPrompt`: placeholders in the text, the media by processor keyword,
and the instruction the Q-Formers read). Prompts are left-padded in batches; the answer is the decoded
new text, stripped. The decoding settings (a task's, `decoding.py`) are laid over the model's own
`GenerationConfig`, which keeps its special tokens and suppressed placeholders.
"""

import copy

import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig, PreTrainedModel, ProcessorMixin

from .prompts import ChatPrompt, Prompt, TextPrompt


def model_inputs(processor: ProcessorMixin, prompts: list[Prompt]):
    """One left-padded batch of model inputs; every prompt of a batch is of the same kind."""
    if all(isinstance(prompt, ChatPrompt) for prompt in prompts):
        return processor.apply_chat_template(
            [prompt.conversation for prompt in prompts],
            tokenize=True,
            return_dict=True,
            processor_kwargs={"padding_side": "left"},
        )
    if not all(isinstance(prompt, TextPrompt) for prompt in prompts):
        raise ValueError("A batch must hold only chat prompts or only text prompts.")
    media = {}
    for prompt in prompts:
        for keyword, items in prompt.media.items():
            media.setdefault(keyword, []).extend(items)
    if writes_its_own_prompt(processor):
        texts = [
            prompt.text if prompt.formatted_text is None else prompt.formatted_text for prompt in prompts
        ]
        instructions = None  # the format says what the Q-Formers read
    else:
        texts, instructions = [prompt.text for prompt in prompts], [prompt.instruction for prompt in prompts]
    return processor(
        text=texts,
        instructions=instructions,
        padding_side="left",
        return_tensors="pt",
        **media,
    )


def writes_its_own_prompt(processor: ProcessorMixin) -> bool:
    """Whether the processor's prompt format (not `parts`) writes prefix, template and Q-Former text itself."""
    return getattr(processor, "prompt_format", {"name": "parts"})["name"] != "parts"


def generation_config(model: PreTrainedModel, settings: dict) -> GenerationConfig:
    """The model's generation config with `settings` (`generate` keywords) laid over it."""
    config = copy.deepcopy(model.generation_config)
    unknown = config.update(**settings)
    if unknown:
        raise ValueError(
            f"Decoding settings must be `GenerationConfig` fields, got unknown {sorted(unknown)}."
        )
    return config


@torch.inference_mode()
def generate_answers(
    model: PreTrainedModel,
    processor: ProcessorMixin,
    prompts: list[Prompt],
    generation: dict,
    batch_size: int = 8,
    progress: bool = True,
    desc: str = "generating",
) -> list[str]:
    """The generated answer of each prompt, with `generation` as the `generate` settings."""
    answers, config = [], generation_config(model, generation)
    starts = range(0, len(prompts), batch_size)
    for start in tqdm(starts, desc=desc, unit="batch", leave=False, disable=not progress):
        inputs = model_inputs(processor, prompts[start : start + batch_size]).to(
            model.device, dtype=model.dtype
        )
        outputs = model.generate(**inputs, generation_config=config)  # (batch, prompt + new tokens)
        new_tokens = outputs[:, inputs["input_ids"].shape[1] :]
        answers += [text.strip() for text in processor.batch_decode(new_tokens, skip_special_tokens=True)]
    return answers


__all__ = ["generate_answers", "generation_config", "model_inputs"]
