"""Prompt formats: how a sample's text and media become the LLM's token stream, one format per published system.

A format turns one sample's text (an instruction with media placeholders) into *pieces*, which the processor
tokenizes each on its own, as the reference code does, and joins:

* `Text(text, special_tokens)`: tokenized alone, with or without the tokenizer's own special tokens;
* `Token(token)`: one literal token (LAVIS's BOS, `</s>`);
* `Media(modality)`: the modality's placeholder, expanded by the processor to its interface's outputs.

Formats (`PROMPT_FORMATS`):

* `"parts"` (default; models built from parts): not handled here. The text is tokenized as written, each
  placeholder where it stands after its `modality_cues`; the Q-Former reads the text without placeholders.
* `"lavis"` (X-InstructBLIP): `LavisPromptFormat`, LAVIS's inference assembly for one eval config
  (`lavis/models/blip2_models/blip2_vicuna_xinstruct.py`, `generate` and `predict_answers`); build it from a
  LAVIS eval yaml with `lavis_eval_config`.
* `"x-llm"` (X-LLM): `XLLMPromptFormat`, the prompt of phellonchen/X-LLM (`xllm/models/xllm_models/xllm.py`
  and its instruction datasets): media first, wrapped `<Image>…</Image>`, then `问：{instruction}\\n答：`.

Both reference formats put every media block before the prompt (LAVIS in the order the placeholders appear in
the text; LAVIS itself orders them by the config's `modalities`, or by the DisCRn sample's, so write them in that
order), and take the instruction to be the text without its placeholders (`split_media`).
"""

import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import ClassVar

from .processor_modalities import MODALITIES, placeholder

PROMPT_FORMATS = ("parts", "lavis", "x-llm")
PLACEHOLDER_PATTERN = re.compile("(" + "|".join(re.escape(placeholder(m)) for m in MODALITIES) + r")[ \t]*")
MODALITY_OF_PLACEHOLDER = {placeholder(m): m for m in MODALITIES}


@dataclass(frozen=True)
class Text:
    """A text piece, tokenized on its own; `special_tokens`: with the tokenizer's own special tokens."""

    text: str
    special_tokens: bool = False


@dataclass(frozen=True)
class Token:
    """One literal token of the LLM's vocabulary."""

    token: str


@dataclass(frozen=True)
class Media:
    """A media block: the modality's placeholder token, expanded by the processor."""

    modality: str


Piece = Text | Token | Media


def split_media(text: str) -> tuple[list[str], str]:
    """The modalities of the text's placeholders, in order, and the text without them (the instruction):
    each placeholder goes with the spaces or tabs after it (`"<image> Describe it."` -> `"Describe it."`,
    `"问：<image>描述"` -> `"问：描述"`), then the ends are stripped."""
    modalities = [MODALITY_OF_PLACEHOLDER[match.group(1)] for match in PLACEHOLDER_PATTERN.finditer(text)]
    return modalities, PLACEHOLDER_PATTERN.sub("", text).strip()


def encode_pieces(tokenizer, pieces: list[Piece], placeholder_ids: dict[str, int]) -> list[int]:
    """The token ids of `pieces`, each tokenized on its own, joined in order."""
    ids = []
    for piece in pieces:
        if isinstance(piece, Media):
            ids.append(placeholder_ids[piece.modality])
        elif isinstance(piece, Token):
            token_id = tokenizer.convert_tokens_to_ids(piece.token)
            if token_id is None or (
                token_id == tokenizer.unk_token_id and piece.token != tokenizer.unk_token
            ):
                raise ValueError(
                    f"The prompt format needs the token {piece.token!r}, which the LLM tokenizer lacks."
                )
            ids.append(token_id)
        elif piece.text:
            ids.extend(tokenizer(piece.text, add_special_tokens=piece.special_tokens)["input_ids"])
    return ids


# LAVIS `Blip2VicunaXInstruct.MODALITY_TO_CUE` (blip2_vicuna_xinstruct.py:72-77), in our modality names;
# X-InstructBLIP has no speech interface: `" speech: "` by analogy.
LAVIS_CUES = {
    "image": " image: ",
    "point_cloud": " 3d: ",
    "video": " video: ",
    "audio": " audio: ",
    "speech": " speech: ",
}
# LAVIS's modality names (`pc`) -> ours.
LAVIS_MODALITIES = {"image": "image", "pc": "point_cloud", "video": "video", "audio": "audio"}


@dataclass(frozen=True)
class LavisPromptFormat:
    """X-InstructBLIP's token stream at inference, as LAVIS assembles it for one eval config.

    The options are the eval config's `model:` keys, merged over the model type's default config
    (`lavis_eval_config` does the merge). `Blip2VicunaXInstruct.generate` builds, each piece tokenized alone
    (blip2_vicuna_xinstruct.py):

    1. `prefix`, with BOS (tokenized at :457 with special tokens, placed first at :1421-1423);
    2. per media block: its cue (:72-77; `clean_tokenization` strips the leading space, :472-473), tokenized
       with BOS (:474). The cue keeps its BOS unless `clean_tokenization` or `remove_start` is set (:1464-1466);
       with either, only the first block of a prompt without `prefix` keeps it (:1457-1463). Then the block's
       query outputs, then, with `add_space`, a `" "` piece without special tokens (:1472-1481);
    3. the prompt: `prompt` with `{}` filled by the instruction (:1141-1142, `predict_answers` :1562); a
       template without `{}` is replaced by the instruction when there is one (:1143-1146). Stripped (:1401),
       `postfix` appended, tokenized with BOS unless `clean_tokenization` (:1411-1416).

    The Q-Former reads `special_qformer_input_prompt` with `{}` filled by the instruction (:1198-1212), or the
    formatted prompt (:1232-1238). LAVIS's BOS is `</s>`: it sets `bos_token='</s>'` on Vicuna's tokenizer
    (:370); `bos_token` names it here.

    Training (`forward`) is not reproduced: with `prefix` and `clean_tokenization` both set it adds every cue and
    its queries twice (:768-772, the `if` lacks an `else`); inference adds each once.
    """

    name: ClassVar[str] = "lavis"
    prompt: str = ""
    prefix: str = ""
    postfix: str = ""
    clean_tokenization: bool = False
    remove_start: bool = False
    add_space: bool = True
    use_cues: bool = True
    special_qformer_input_prompt: str | None = None
    bos_token: str = "</s>"

    def llm_prompt(self, instruction: str) -> str:
        """The prompt before stripping and `postfix` (what the Q-Former reads without a special prompt)."""
        if "{}" in self.prompt:
            return self.prompt.format(instruction)
        return instruction or self.prompt

    def cue(self, modality: str) -> str:
        cue = LAVIS_CUES[modality]
        return cue.lstrip() if self.clean_tokenization else cue

    def pieces(self, text: str) -> list[Piece]:
        modalities, instruction = split_media(text)
        bos = Token(self.bos_token)
        pieces: list[Piece] = [bos, Text(self.prefix)] if self.prefix else []
        for index, modality in enumerate(modalities):
            if self.use_cues:
                cue_keeps_bos = not (self.clean_tokenization or self.remove_start) or (
                    index == 0 and not self.prefix
                )
                pieces += [bos, Text(self.cue(modality))] if cue_keeps_bos else [Text(self.cue(modality))]
            pieces.append(Media(modality))
            if self.add_space:
                pieces.append(Text(" "))
        prompt = self.llm_prompt(instruction).strip() + self.postfix
        pieces += [Text(prompt)] if self.clean_tokenization else [bos, Text(prompt)]
        return pieces

    def qformer_text(self, text: str) -> str:
        _, instruction = split_media(text)
        if self.special_qformer_input_prompt:
            return self.special_qformer_input_prompt.format(instruction)
        return self.llm_prompt(instruction)

    def chat_template(self) -> str:
        """A chat template (jinja) for one user question: its text, media parts as placeholders; the format
        does the rest. LAVIS's X-InstructBLIP prompt has no system message and no earlier turns."""
        return render_macro() + (
            "{%- set users = messages | selectattr('role', 'equalto', 'user') | list -%}"
            "{%- if users | length != 1 or messages | length != 1 -%}"
            "{{ raise_exception('The lavis prompt format takes one user message, without system or assistant "
            "messages.') }}{%- endif -%}{{ render(users[0]['content']) }}"
        )

    def to_dict(self) -> dict:
        return {"name": self.name, **asdict(self)}


def render_macro() -> str:
    """The chat templates' `render(content)`: text parts as written, media parts as their placeholders."""
    return (
        "{%- macro render(content) -%}{%- if content is string -%}{{ content }}{%- else -%}"
        "{%- for part in content -%}{%- if part['type'] == 'text' -%}{{ part['text'] }}"
        "{%- else -%}{{ '<' ~ part['type'] ~ '>' }}{%- endif -%}{%- endfor -%}{%- endif -%}{%- endmacro -%}"
    )


# X-LLM's wrappers (`prompt_wrap`, xllm.py:151-169, with '<Image><ImageHere></Image>' at :197 and its speech and
# video twins at :308 and :257) and their order: image or video, then speech, then the text (xllm.py:1012-1018).
X_LLM_WRAPPERS = {
    "image": ("<Image>", "</Image>"),
    "video": ("<Video>", "</Video>"),
    "speech": ("<Speech>", "</Speech>"),
}
X_LLM_ORDER = ("image", "video", "speech")
# The question and answer markers: Chinese as released (vl_instruction.py:56), or the English twin.
X_LLM_MARKERS = {"zh": ("问：", "\n答："), "en": ("Question: ", "\nAnswer:")}


@dataclass(frozen=True)
class XLLMPromptFormat:
    """X-LLM's prompt (phellonchen/X-LLM): media blocks first, then `问：{instruction}\\n答：`.

    * Each media block is `<Image>`, the interface's outputs, `</Image>` (`<Video>`, `<Speech>` likewise), the
      wrappers tokenized on their own without special tokens (`prompt_wrap`, xllm.py:158-167), image or video
      before speech (xllm.py:1012-1018; `masr_forward` :393-397).
    * One question: `问：{instruction}\\n答：`, the instruction datasets' prompt (vl_instruction.py:56,
      video_instruction.py:58, asr_instruction.py:55). A conversation: ChatGLM's rounds,
      `[Round {i}]\\n问：{question}\\n答：{answer}\\n` per earlier turn, then `[Round {n}]\\n问：{question}\\n答：`
      (vsd_instruction.py:63-66, demo_xllm.py:359-363); `conversation_text` writes it, and a text that already
      starts with `[Round 0]\\n` or the question marker is taken as written.
    * The prompt is tokenized with the tokenizer's special tokens (ChatGLM's `[gMASK]` and `<sop>`;
      xllm.py:1007, :1084).

    `language="en"` is an English twin (`Question: …\\nAnswer:`), not in the released code.
    """

    name: ClassVar[str] = "x-llm"
    language: str = "zh"

    def __post_init__(self):
        if self.language not in X_LLM_MARKERS:
            raise ValueError(f"`language` must be one of {sorted(X_LLM_MARKERS)}, got {self.language!r}.")

    def conversation_text(self, turns: list[tuple[str, str | None]]) -> str:
        """The prompt of a conversation: `(question, answer)` turns, the last answer None (to be generated).
        One turn gives the single-question prompt; more give X-LLM's `[Round n]` layout."""
        question_marker, answer_marker = X_LLM_MARKERS[self.language]
        if not turns or turns[-1][1] is not None:
            raise ValueError("`turns` must end with a question whose answer is None (the one to generate).")
        if len(turns) == 1:
            return f"{question_marker}{turns[0][0]}{answer_marker}"
        rounds = [
            f"[Round {i}]\n{question_marker}{q}{answer_marker}{a}\n" for i, (q, a) in enumerate(turns[:-1])
        ]
        return "".join(rounds) + f"[Round {len(turns) - 1}]\n{question_marker}{turns[-1][0]}{answer_marker}"

    def chat_template(self) -> str:
        """A chat template (jinja) that renders a conversation as `conversation_text` does, media parts as
        placeholders; the processor then moves them in front. X-LLM's prompt has no system message."""
        question, answer = (marker.replace("\n", "\\n") for marker in X_LLM_MARKERS[self.language])
        return (
            render_macro() + "{%- if messages | selectattr('role', 'equalto', 'system') | list -%}"
            "{{ raise_exception('The x-llm prompt format has no system message.') }}{%- endif -%}"
            "{%- set users = messages | selectattr('role', 'equalto', 'user') | list -%}"
            "{%- if users | length == 1 and messages[-1]['role'] == 'user' -%}"
            f"{{{{ '{question}' }}}}{{{{ render(users[0]['content']) }}}}{{{{ '{answer}' }}}}"
            "{%- else -%}{%- set ns = namespace(round=0) -%}{%- for message in messages -%}"
            "{%- if message['role'] == 'user' -%}"
            f"{{{{ '[Round ' ~ ns.round ~ ']\\n{question}' }}}}{{{{ render(message['content']) }}}}{{{{ '{answer}' }}}}"
            "{%- else -%}{{ render(message['content']) }}{{ '\\n' }}{%- set ns.round = ns.round + 1 -%}"
            "{%- endif -%}{%- endfor -%}{%- endif -%}"
        )

    def is_formatted(self, text: str) -> bool:
        return text.startswith(("[Round 0]\n", X_LLM_MARKERS[self.language][0]))

    def pieces(self, text: str) -> list[Piece]:
        modalities, instruction = split_media(text)
        unsupported = sorted(set(modalities) - set(X_LLM_ORDER))
        if unsupported:
            raise ValueError(
                f"The x-llm prompt format wraps {list(X_LLM_ORDER)} inputs; the text has {unsupported} placeholders."
            )
        pieces: list[Piece] = []
        for modality in sorted(modalities, key=X_LLM_ORDER.index):
            opening, closing = X_LLM_WRAPPERS[modality]
            pieces += [Text(opening), Media(modality), Text(closing)]
        prompt = (
            instruction if self.is_formatted(instruction) else self.conversation_text([(instruction, None)])
        )
        return [*pieces, Text(prompt, special_tokens=True)]

    def qformer_text(self, text: str) -> str:
        """X-LLM's Q-Formers read no text (xllm.py:185-190); the instruction, as the `parts` format gives."""
        return " ".join(split_media(text)[1].split())

    def to_dict(self) -> dict:
        return {"name": self.name, **asdict(self)}


FORMAT_CLASSES = {cls.name: cls for cls in (LavisPromptFormat, XLLMPromptFormat)}


def prompt_format_from(spec: "str | dict | LavisPromptFormat | XLLMPromptFormat | None"):
    """The format object of a processor's `prompt_format` (a name, a saved dict, or a format); None for
    `"parts"`, which the processor handles itself."""
    if spec is None or spec == "parts" or (isinstance(spec, dict) and spec.get("name") == "parts"):
        return None
    if isinstance(spec, tuple(FORMAT_CLASSES.values())):
        return spec
    options = {"name": spec} if isinstance(spec, str) else dict(spec)
    name = options.pop("name", None)
    if name not in FORMAT_CLASSES:
        raise ValueError(f"`prompt_format` must name one of {list(PROMPT_FORMATS)}, got {name!r}.")
    cls = FORMAT_CLASSES[name]
    unknown = sorted(set(options) - {f.name for f in fields(cls)})
    if unknown:
        raise ValueError(
            f"The {name!r} prompt format has no options {unknown}; it takes {[f.name for f in fields(cls)]}."
        )
    return cls(**options)


def prompt_format_dict(spec) -> dict:
    """What `processor_config.json` stores: `{"name": ..., **options}`."""
    rules = prompt_format_from(spec)
    return {"name": "parts"} if rules is None else rules.to_dict()


# --- LAVIS eval configs --------------------------------------------------------------------------------------

# The prompt keys of LAVIS's model default configs, which an eval yaml's `model:` section is laid over
# (`lavis/common/config.py:71-79`). lavis/configs/models/blip2/blip2_xinstruct_vicuna7b.yaml:56,64,74-77 and
# blip2_xinstruct_vicuna13b.yaml:55,63,73-74.
LAVIS_MODEL_DEFAULTS = {
    "vicuna7b": {
        "prompt": "",
        "modalities": ["audio", "video", "pc", "image"],
        "prefix": "USER: ",
        "postfix": "\nASSISTANT:",
        "clean_tokenization": True,
    },
    "vicuna13b": {"prompt": "", "modalities": ["image", "video", "audio", "pc"], "prefix": "", "postfix": ""},
}
# `Blip2VicunaXInstruct.from_config` defaults for keys neither file sets (blip2_vicuna_xinstruct.py:2189-2248).
LAVIS_FROM_CONFIG_DEFAULTS = {
    "prompt": "",
    "prefix": "",
    "postfix": "",
    "use_cues": True,
    "special_qformer_input_prompt": False,
    "add_space": True,
    "remove_start": False,
    "clean_tokenization": False,
    "enumerate_inputs": False,
    "use_caption": False,
    "use_describe": False,
    "joint_video_audio": False,
}
# Inference paths of `generate` that `LavisPromptFormat` does not build.
LAVIS_UNSUPPORTED = {
    "enumerate_inputs": "(a) / (b) enumeration pieces (blip2_vicuna_xinstruct.py:1393-1398)",
    "use_caption": "captions in place of media (blip2_vicuna_xinstruct.py:1158-1191)",
    "use_describe": "per-modality Q-Former prompts (blip2_vicuna_xinstruct.py:1214-1229)",
    "joint_video_audio": "interleaved video and audio frames (blip2_vicuna_xinstruct.py:1425-1448)",
}
# Tasks whose `valid_step` passes the run section's `prompt` to `predict_answers`, which uses the model's only
# when it is empty (lavis/tasks/vqa.py:72,141,332,420; blip2_vicuna_xinstruct.py:1547-1548).
LAVIS_QA_TASKS = ("vqa", "gqa", "aok_vqa", "discrn_qa")
# `BeatsAudioProcessor.from_config`'s window count (lavis/processors/audio_processors.py:138).
LAVIS_AUDIO_WINDOWS = 2


@dataclass(frozen=True)
class LavisEvalConfig:
    """What a LAVIS X-InstructBLIP eval yaml says about inputs, merged as LAVIS merges it.

    `model` and `run` are the merged `model:` section and the `run:` section, for settings read elsewhere
    (decoding). `num_video_frames` / `num_audio_windows` come from the dataset's eval processors (None when the
    dataset has no such input)."""

    model_type: str
    task: str
    prompt_format: LavisPromptFormat
    modalities: tuple[str, ...]
    num_video_frames: int | None
    num_audio_windows: int | None
    model: dict = field(repr=False)
    run: dict = field(repr=False)


def lavis_yaml_sections(text: str) -> dict[str, tuple[int, str]]:
    """Each top-level block of a LAVIS yaml (`model:`, `datasets:`, `run:`) with its first line number, parsed
    apart so that a config whose `datasets:` block does not parse (the `objaverse_qa.yaml` files have a key at
    column 0 inside it) still gives the others."""
    sections, name, start, lines = {}, None, 0, []
    for number, line in enumerate(text.splitlines(), 1):
        if line and not line[0].isspace() and not line.startswith("#") and line.rstrip().endswith(":"):
            if name is not None:
                sections[name] = (start, "\n".join(lines))
            name, start, lines = line.rstrip()[:-1].strip(), number, [line]
        elif name is not None:
            lines.append(line)
    if name is not None:
        sections[name] = (start, "\n".join(lines))
    return sections


def read_lavis_yaml(path: Path) -> dict:
    """A LAVIS yaml file as a dict (`parse_lavis_yaml`)."""
    return parse_lavis_yaml(path.read_text(), str(path))


def parse_lavis_yaml(text: str, where: str) -> dict:
    """A LAVIS yaml's text as a dict. Some published ones are not valid YAML (vicuna7b/pc/objaverse_qa.yaml:105 has
    `train:` at column 0, inside `datasets:`), which LAVIS's own loader (OmegaConf, over PyYAML) refuses too;
    their top-level sections are then read one by one and those that do not parse are left out, with a warning
    naming `where`."""
    import warnings

    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        config, broken = {}, []
        for name, (_, block) in lavis_yaml_sections(text).items():
            try:
                config.update(yaml.safe_load(block) or {})
            except yaml.YAMLError:
                broken.append(name)
        warnings.warn(
            f"{where} is not valid YAML ({error.problem}); left out what does not parse: {broken}",
            stacklevel=3,
        )
        return config


def lavis_eval_config(source: "str | Path | dict") -> LavisEvalConfig:
    """Read a LAVIS eval yaml (path or parsed dict): its `model:` section laid over the model type's default
    config and `from_config`'s defaults, the prompt chosen as the task chooses it, the eval processors' frame
    and window counts."""
    config = source if isinstance(source, dict) else read_lavis_yaml(Path(source))
    model_section = dict(config.get("model") or {})
    model_type = model_section.get("model_type")
    if model_type not in LAVIS_MODEL_DEFAULTS:
        raise ValueError(
            f"The yaml's `model.model_type` must be one of {sorted(LAVIS_MODEL_DEFAULTS)}, got {model_type!r}."
        )
    model = {**LAVIS_FROM_CONFIG_DEFAULTS, **LAVIS_MODEL_DEFAULTS[model_type], **model_section}
    for key, what in LAVIS_UNSUPPORTED.items():
        if model[key]:
            raise ValueError(
                f"The yaml sets `{key}: {model[key]}`: {what} is not supported by the 'lavis' format."
            )
    run = dict(config.get("run") or {})
    task = run.get("task", "")
    prompt = model["prompt"] or ""
    if task in LAVIS_QA_TASKS and run.get("prompt"):
        prompt = run["prompt"]
    postfix = model["postfix"] if isinstance(model["postfix"], str) else ""  # :460-461
    prompt_format = LavisPromptFormat(
        prompt=prompt,
        prefix=model["prefix"] or "",
        postfix=postfix,
        clean_tokenization=bool(model["clean_tokenization"]),
        remove_start=bool(model["remove_start"]),
        add_space=bool(model["add_space"]),
        use_cues=bool(model["use_cues"]),
        special_qformer_input_prompt=model["special_qformer_input_prompt"] or None,
    )
    unknown = [m for m in model["modalities"] if m not in LAVIS_MODALITIES]
    if unknown:
        raise ValueError(
            f"The yaml's `model.modalities` has {unknown}; expected among {list(LAVIS_MODALITIES)}."
        )
    datasets = config.get("datasets") or {}
    video_frames, audio_windows = None, None
    for dataset in datasets.values():
        # Processors are found by their registered name, under whichever key the dataset gives them
        # (`video_processor`, or `vis_processor` for the video datasets).
        for processor in (dataset or {}).values():
            evaluation = processor.get("eval") if isinstance(processor, dict) else None
            name = (evaluation or {}).get("name", "") if isinstance(evaluation, dict) else ""
            if name.startswith("alpro_video") and evaluation.get("n_frms") is not None:
                video_frames = int(evaluation["n_frms"])
            if name == "beats_audio":
                audio_windows = int(evaluation.get("n_frames", LAVIS_AUDIO_WINDOWS))
    return LavisEvalConfig(
        model_type=model_type,
        task=task,
        prompt_format=prompt_format,
        modalities=tuple(LAVIS_MODALITIES[m] for m in model["modalities"]),
        num_video_frames=video_frames,
        num_audio_windows=audio_windows,
        model=model,
        run=run,
    )


def lavis_model_default_format(model_type: str) -> LavisPromptFormat:
    """The format of LAVIS's model default config alone (what the presets use outside an evaluation)."""
    return lavis_eval_config({"model": {"model_type": model_type}}).prompt_format


__all__ = [
    "LAVIS_CUES",
    "PROMPT_FORMATS",
    "LavisEvalConfig",
    "LavisPromptFormat",
    "Media",
    "Text",
    "Token",
    "XLLMPromptFormat",
    "encode_pieces",
    "lavis_eval_config",
    "lavis_model_default_format",
    "lavis_yaml_sections",
    "prompt_format_dict",
    "prompt_format_from",
    "split_media",
]
