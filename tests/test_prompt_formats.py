"""Token streams of the published prompt formats, against the sequences the reference code assembles.

LAVIS's streams are written out by hand from `lavis/models/blip2_models/blip2_vicuna_xinstruct.py` (cited as
`:line`) for eval configs copied from LAVIS into tests/fixtures/lavis_eval/. X-LLM's come from
phellonchen/X-LLM (`xllm/models/xllm_models/xllm.py` and its instruction datasets).

The LLM tokenizer is built here with `tokenizers`, shaped like the one LAVIS runs: sentencepiece-style pieces
(a Unigram model whose pieces carry `▁` for a space), a `▁` prepended to every call's text and spaces
replaced by `▁` (a `Prepend` normalizer and a `Metaspace` pre-tokenizer: the legacy Llama tokenizer's
behaviour, so `" image: "` gives `▁ ▁image : ▁` and `"image: "` gives `▁image : ▁`), `</s>` as BOS and EOS
(LAVIS sets `bos_token='</s>'`, :370-371) and a `[PAD]` pad token (:369).
"""

import numpy as np
import pytest
from conftest import random_image, random_video
from jinja2.exceptions import TemplateError
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import BertTokenizer, BlipImageProcessor, PreTrainedTokenizerFast

from xllm.evaluation.discrn import DiscrnProtocol, media_prompt
from xllm.evaluation.generation import model_inputs
from xllm.modeling_xllm.configuration_presets import PRESETS, preset_config
from xllm.processing import XLLMProcessor, XLLMVideoProcessor
from xllm.processing.prompt_formats_xllm import (
    LavisPromptFormat,
    XLLMPromptFormat,
    lavis_eval_config,
    prompt_format_from,
    split_media,
)
from xllm.processor_presets import preset_processor, preset_prompt_format

FIXTURES = __import__("pathlib").Path(__file__).parent / "fixtures" / "lavis_eval"

WORDS = (
    "You are given two inputs Select exactly one of the by referece to its relative position or second left right "
    "that best answers question a short description based on given image respond what is man holding Question "
    "Answer woman doing it raining describe 3d model input color chair video which options louder larger answer "
    "audio USER What this 0 1"
).split()
PIECES = [
    ".",
    ",",
    ":",
    "?",
    ")",
    "▁(",
    "first",
    "\n",
    "ASSISTANT",
    "▁<",
    "▁</",
    "Image",
    "Video",
    "Speech",
    ">",
]
PIECES += [
    "▁[",
    "[",
    "Round",
    "]",
    "▁问",
    "问",
    "：",
    "答",
    "描述",
    "这张",
    "图片",
    "请",
    "回答",
    "语音",
    "中的",
    "问题",
]
PIECES += ["一只", "猫", "它", "是", "什么", "颜色"]
CHARACTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def lavis_llm_tokenizer() -> PreTrainedTokenizerFast:
    """Llama-style: `<unk>`, `<s>`, `</s>` first; whole words win over single characters."""
    vocab = [("<unk>", 0.0), ("<s>", 0.0), ("</s>", 0.0)]
    vocab += [("▁" + word, -1.0) for word in WORDS] + [(piece, -1.0) for piece in PIECES]
    vocab += [("▁▁", -2.0), ("▁", -2.0)] + [(c, -10.0) for c in CHARACTERS]
    backend = Tokenizer(models.Unigram(vocab, unk_id=0, byte_fallback=False))
    backend.normalizer = normalizers.Prepend("▁")
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=False)
    backend.post_processor = processors.TemplateProcessing(single="</s> $A", special_tokens=[("</s>", 2)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="</s>", eos_token="</s>", unk_token="<unk>"
    )
    tokenizer.add_special_tokens({"pad_token": "[PAD]"})
    return tokenizer


def qformer_tokenizer() -> BertTokenizer:
    words = sorted(
        {w.lower() for w in WORDS} | set(":?.,") | set("描述这张图片请回答语音中的问题它是什么颜色")
    )
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    return BertTokenizer(vocab={token: index for index, token in enumerate(vocab)}, model_max_length=128)


@pytest.fixture(scope="module")
def tokenizers():
    return lavis_llm_tokenizer(), qformer_tokenizer()


def lavis_processor(tokenizers, config_path: str) -> XLLMProcessor:
    llm, qformer = tokenizers
    size = "13b" if "vicuna13b" in config_path or config_path.endswith("_13b") else "7b"
    return preset_processor(
        f"x-instructblip-{size}", llm, qformer, lavis_config=FIXTURES / f"{config_path}.yaml"
    )


BOS = "</s>"
Q = 32  # num_query_token of both LAVIS default configs (blip2_xinstruct_vicuna7b.yaml:54) and of the presets


def block(modality: str, items: int = 1) -> list[str]:
    """A media block's query outputs: 32 per image / point cloud, per frame or per audio window."""
    return [f"<{modality}>"] * (Q * items)


SPACE = [
    "▁▁"
]  # the " " piece after each block, without BOS (add_space, :1472-1481; from_config default :2232)
# MODALITY_TO_CUE (:72-77) lstripped by clean_tokenization (:472-473, 7b default config :77), tokenized alone.
CUE_7B = {
    m: [f"▁{word}", ":", "▁"] for m, word in [("image", "image"), ("video", "video"), ("audio", "audio")]
}
CUE_7B["point_cloud"] = ["▁3d", ":", "▁"]
# The cues as written: " image: " -> the prepended space, then the word (13b: no clean_tokenization).
CUE_13B = {m: ["▁", *tokens] for m, tokens in CUE_7B.items()}
A_SHORT_DESCRIPTION = ["▁a", "▁short", "▁description"]
DISCRN_PREFIX = [  # audio_video_describe.yaml:74, image_3d_describe.yaml:67, typo and trailing space as published
    "▁You", "▁are", "▁given", "▁two", "▁inputs", ".", "▁Select", "▁exactly", "▁one", "▁of", "▁the", "▁two", "▁by",
    "▁referece", "▁to", "▁its", "▁relative", "▁position", "▁(", "first", "▁or", "▁second", ",", "▁left", "▁or",
    "▁right", ")", "▁that", "▁best", "▁answers", "▁the", "▁question", ".", "▁",
]  # fmt: skip
ASSISTANT = [
    "\n",
    "ASSISTANT",
    ":",
]  # the 7b default config's postfix "\nASSISTANT:" (blip2_xinstruct_vicuna7b.yaml:75)


def seven_b(modality: str, items: int, prompt: list[str]) -> list[str]:
    """7b, no prefix: the first (only) cue keeps its BOS (:1458-1460), the prompt has none (:1415)."""
    return [BOS, *CUE_7B[modality], *block(modality, items), *SPACE, *prompt]


def thirteen_b(modality: str, items: int, prompt: list[str]) -> list[str]:
    """13b: every cue and the prompt keep their BOS (:1464-1466, :1415)."""
    return [BOS, *CUE_13B[modality], *block(modality, items), *SPACE, BOS, *prompt]


MAN_HOLDING = ["▁what", "▁is", "▁the", "▁man", "▁holding", "?"]
WOMAN_DOING = ["▁what", "▁is", "▁the", "▁woman", "▁doing", "?"]
RAINING = ["▁Question", ":", "▁is", "▁it", "▁raining", "?", "▁Answer", ":"]
CHAIR = [
    "▁based",
    "▁on",
    "▁the",
    "▁given",
    "▁input",
    "▁respond",
    "▁to",
    "▁what",
    "▁color",
    "▁is",
    "▁the",
    "▁chair",
    "?",
]
OKVQA = ["▁based", "▁on", "▁the", "▁given", "▁the", "▁image", "▁respond", "▁to", *MAN_HOLDING]
DESCRIBE_3D = ["▁describe", "▁the", "▁3d", "▁model"]

# (config, text, LLM tokens, Q-Former text). Captioning configs have no question: their eval datasets drop
# `text_input` (audio_captioning_datasets.py:233-237), so the prompt is the config's `prompt` (:1146).
SINGLE_MODALITY_CASES = [
    # image: coco_captioning_test.yaml:56 `prompt: a short description`; okvqa_qa.yaml:56 a `{}` template.
    ("vicuna7b/image/coco_captioning_test", "<image>", seven_b("image", 1, A_SHORT_DESCRIPTION), "a short description"),
    ("vicuna13b/image/coco_captioning_test", "<image>", thirteen_b("image", 1, A_SHORT_DESCRIPTION), "a short description"),
    ("vicuna7b/image/okvqa_qa", "<image> what is the man holding?", seven_b("image", 1, OKVQA),
     "based on the given the image respond to what is the man holding?"),
    ("vicuna13b/image/okvqa_qa", "<image> what is the man holding?", thirteen_b("image", 1, OKVQA),
     "based on the given the image respond to what is the man holding?"),
    # video: 5 frames at 7b (msrvtt_captioning_test.yaml:93), 4 at 13b (vicuna13b/.../msrvtt_captioning_test.yaml:93).
    ("vicuna7b/video/msrvtt_captioning_test", "<video>", seven_b("video", 5, A_SHORT_DESCRIPTION), "a short description"),
    ("vicuna13b/video/msrvtt_captioning_test", "<video>", thirteen_b("video", 4, A_SHORT_DESCRIPTION),
     "a short description"),
    ("vicuna7b/video/msvd_qa", "<video> what is the woman doing?",
     seven_b("video", 5, ["▁Question", ":", *WOMAN_DOING, "▁Answer", ":"]), "Question: what is the woman doing? Answer:"),
    ("vicuna13b/video/msvd_qa", "<video> what is the woman doing?",
     thirteen_b("video", 4, ["▁based", "▁on", "▁the", "▁given", "▁video", "▁respond", "▁to", *WOMAN_DOING]),
     "based on the given video respond to what is the woman doing?"),
    # audio: exactly 2 windows (audio_processors.py:115-120, n_frames default :138).
    ("vicuna7b/audio/audiocaps_captioning_test", "<audio>", seven_b("audio", 2, A_SHORT_DESCRIPTION),
     "a short description"),
    ("vicuna13b/audio/audiocaps_captioning_test", "<audio>", thirteen_b("audio", 2, A_SHORT_DESCRIPTION),
     "a short description"),
    # clothoQA at 7b: the model's `prompt: "{}"` (:56) loses to the run's "Question: {} Answer:" (:135), which
    # the vqa task passes to predict_answers (vqa.py:72,141; :1547-1548).
    ("vicuna7b/audio/clothoQA_captioning", "<audio> is it raining?", seven_b("audio", 2, RAINING),
     "Question: is it raining? Answer:"),
    ("vicuna13b/audio/clothoQA_captioning", "<audio> is it raining?", thirteen_b("audio", 2, RAINING),
     "Question: is it raining? Answer:"),
    # 3D: objaverse_captioning.yaml:55, objaverse_qa.yaml:55.
    ("vicuna7b/pc/objaverse_captioning", "<point_cloud>", seven_b("point_cloud", 1, DESCRIBE_3D), "describe the 3d model"),
    ("vicuna13b/pc/objaverse_captioning", "<point_cloud>", thirteen_b("point_cloud", 1, DESCRIBE_3D),
     "describe the 3d model"),
    ("vicuna7b/pc/objaverse_qa", "<point_cloud> what color is the chair?", seven_b("point_cloud", 1, CHAIR),
     "based on the given input respond to what color is the chair?"),
    ("vicuna13b/pc/objaverse_qa", "<point_cloud> what color is the chair?", thirteen_b("point_cloud", 1, CHAIR),
     "based on the given input respond to what color is the chair?"),
]  # fmt: skip


def louder(*postfix: str) -> list[str]:
    # prompt "question: {} answer:" (audio_video_describe.yaml:55) around the (rewritten) question
    return [
        "▁question",
        ":",
        "▁which",
        "▁of",
        "▁the",
        "▁two",
        "▁options",
        "▁is",
        "▁louder",
        "▁answer",
        ":",
        *postfix,
    ]


def larger(*postfix: str) -> list[str]:
    return [
        "▁question",
        ":",
        "▁which",
        "▁of",
        "▁the",
        "▁two",
        "▁options",
        "▁is",
        "▁larger",
        "▁answer",
        ":",
        *postfix,
    ]


# DisCRn: the prefix with its BOS (:457, :1421-1423); a prefix drops every cue's BOS under clean_tokenization
# or remove_start (:1461-1463).
DISCRN_IMAGE_3D_7B = [
    BOS, *DISCRN_PREFIX, *CUE_7B["image"], *block("image"), *SPACE, *CUE_7B["point_cloud"], *block("point_cloud"),
    *SPACE, *larger(*ASSISTANT),
]  # fmt: skip
DISCRN_CASES = [
    # 7b: clean_tokenization and the postfix from the default config; Q-Former reads "a short description" (:73).
    ("discrn/audio_video_describe", "<audio><video> which of the two options is louder",
     [BOS, *DISCRN_PREFIX, *CUE_7B["audio"], *block("audio", 2), *SPACE, *CUE_7B["video"], *block("video", 2), *SPACE,
      *louder(*ASSISTANT)], "a short description"),
    # 13b: remove_start (:80) with the prefix; no special Q-Former prompt (:73 commented out): the formatted prompt.
    ("discrn/audio_video_describe_13b", "<audio><video> which of the two options is louder",
     [BOS, *DISCRN_PREFIX, *CUE_13B["audio"], *block("audio", 2), *SPACE, *CUE_13B["video"], *block("video", 2),
      *SPACE, BOS, *louder()], "question: which of the two options is louder answer:"),
    ("discrn/image_3d_describe", "<image><point_cloud> which of the two options is larger", DISCRN_IMAGE_3D_7B,
     "a short description"),
    # image_3d_describe_13b.yaml:7 says `model_type: vicuna7b` (and 7b checkpoints, :17-20): the 7b stream.
    ("discrn/image_3d_describe_13b", "<image><point_cloud> which of the two options is larger", DISCRN_IMAGE_3D_7B,
     "a short description"),
]  # fmt: skip


def media_for(text: str) -> dict:
    media = {}
    if "<image>" in text:
        media["images"] = [random_image(0)]
    if "<video>" in text:
        media["videos"] = [random_video(12, seed=1)]
    if "<audio>" in text:
        media["audio"] = [np.sin(np.linspace(0, 2000, 16000 * 3)).astype(np.float32)]
    if "<point_cloud>" in text:
        media["point_clouds"] = [np.random.default_rng(0).normal(size=(100, 3))]
    if "<speech>" in text:
        media["speech"] = [np.sin(np.linspace(0, 800, 16000)).astype(np.float32)]
    return media


def tokens(tokenizer, ids) -> list[str]:
    return tokenizer.convert_ids_to_tokens([int(i) for i in ids])


def qformer_tokens(qformer_text: str, qformer) -> list[str]:
    return ["[CLS]", *qformer.tokenize(qformer_text), "[SEP]"]


@pytest.mark.parametrize(
    ("config", "text", "expected", "qformer_text"),
    [pytest.param(*case, id=case[0]) for case in SINGLE_MODALITY_CASES + DISCRN_CASES],
)
def test_lavis_eval_config_gives_the_token_stream_lavis_assembles(
    tokenizers, config, text, expected, qformer_text
):
    llm, qformer = tokenizers
    processor = lavis_processor(tokenizers, config)
    with (
        pytest.warns(UserWarning) if "<point_cloud>" in text else _no_warning()
    ):  # 100 points topped up to 8192
        batch = processor(text=text, **media_for(text))
    assert tokens(llm, batch["input_ids"][0]) == expected
    assert batch["attention_mask"][0].tolist() == [1] * len(expected)
    assert tokens(qformer, batch["qformer_input_ids"][0]) == qformer_tokens(qformer_text, qformer)


def _no_warning():
    import contextlib

    return contextlib.nullcontext()


def test_discrn_evaluation_through_a_lavis_discrn_processor_writes_prefix_template_and_cues_once(tokenizers):
    processor = lavis_processor(tokenizers, "discrn/audio_video_describe")
    audio, video = media_for("<audio><video>")["audio"][0], media_for("<video>")["videos"][0]
    example = {
        "audio": audio,
        "videos": video,
        "messages": [{"role": "user", "content": [{"type": "video"}, {"type": "audio"}, {"type": "text", "text": "which object is louder"}]}],
        "label": "second",
    }  # fmt: skip
    prompt = media_prompt(example, DiscrnProtocol())  # presented audio first (the fixed order), label flipped
    batch = model_inputs(processor, [prompt])
    expected = processor(
        text="<audio><video> which of the two options is louder?", audio=[audio], videos=[video]
    )
    assert batch["input_ids"].tolist() == expected["input_ids"].tolist()
    llm, qformer = tokenizers
    stream = tokens(llm, batch["input_ids"][0])
    assert stream[: 1 + len(DISCRN_PREFIX)] == [BOS, *DISCRN_PREFIX]
    assert stream.count("▁referece") == 1 and stream.count("▁answer") == 1  # prefix and template once
    assert tokens(qformer, batch["qformer_input_ids"][0]) == qformer_tokens("a short description", qformer)


def test_lavis_chat_template_gives_the_stream_of_the_text(tokenizers):
    processor = lavis_processor(tokenizers, "discrn/image_3d_describe")
    image, cloud = random_image(0), np.random.default_rng(0).normal(size=(100, 3))
    conversation = [
        {
            "role": "user",
            "content": [
                {"type": "image", "image": image},
                {"type": "point_cloud", "point_cloud": cloud},
                {"type": "text", "text": "which of the two options is larger"},
            ],
        }
    ]
    with pytest.warns(UserWarning):
        chat = processor.apply_chat_template(conversation, tokenize=True, return_dict=True)
        text = processor(
            text="<image><point_cloud>which of the two options is larger",
            images=[image],
            point_clouds=[cloud],
        )
    assert chat["input_ids"].tolist() == text["input_ids"].tolist()
    assert chat["qformer_input_ids"].tolist() == text["qformer_input_ids"].tolist()  # "a short description"
    with pytest.raises(TemplateError, match="takes one user message"):
        processor.apply_chat_template(
            [*conversation, {"role": "assistant", "content": "the first"}], tokenize=True
        )


def test_lavis_batches_are_left_padded_with_pad(tokenizers):
    llm, _ = tokenizers
    processor = lavis_processor(tokenizers, "vicuna7b/image/okvqa_qa")
    batch = processor(
        text=["<image> what is the man holding?", "<image>"], images=[random_image(0), random_image(1)]
    )
    short = seven_b("image", 1, ["▁based", "▁on", "▁the", "▁given", "▁the", "▁image", "▁respond", "▁to"])
    padding = len(seven_b("image", 1, OKVQA)) - len(short)
    assert tokens(llm, batch["input_ids"][1]) == ["[PAD]"] * padding + short
    assert batch["attention_mask"][1].tolist() == [0] * padding + [1] * len(short)


def test_x_instructblip_preset_uses_the_model_default_config_outside_an_evaluation(tokenizers):
    llm, qformer = tokenizers
    processor = preset_processor("x-instructblip-7b", llm, qformer)
    batch = processor(text="<image> What is this?", images=[random_image(0)])
    # prefix "USER: " with BOS (blip2_xinstruct_vicuna7b.yaml:74, :457), its cue without BOS (a prefix, :1461-1463),
    # the prompt as given, without BOS, with the postfix (:75, :1411-1416).
    assert tokens(llm, batch["input_ids"][0]) == [
        BOS, "▁USER", ":", "▁", *CUE_7B["image"], *block("image"), *SPACE, "▁What", "▁is", "▁this", "?", *ASSISTANT
    ]  # fmt: skip
    assert tokens(qformer, batch["qformer_input_ids"][0]) == qformer_tokens("What is this?", qformer)


def test_every_cue_and_its_queries_come_once_where_lavis_training_adds_them_twice(tokenizers):
    # forward() with prefix and clean_tokenization adds cue[1:] + queries, then cue + queries again
    # (:768-772); inference, which we follow, adds them once (:1456-1463).
    llm, _ = tokenizers
    processor = lavis_processor(tokenizers, "discrn/image_3d_describe")
    batch = processor(text="<image><point_cloud> which is larger", **media_for("<image><point_cloud>"))
    ids = tokens(llm, batch["input_ids"][0])
    assert ids.count("<image>") == Q and ids.count("<point_cloud>") == Q
    assert ids.count("▁3d") == 1


# --- X-LLM -----------------------------------------------------------------------------------------------------

IMAGE_BLOCK = [
    "▁<",
    "Image",
    ">",
    *block("image"),
    "▁</",
    "Image",
    ">",
]  # '<Image><ImageHere></Image>' (xllm.py:197)
SPEECH_BLOCK = [
    "▁<",
    "Speech",
    ">",
    "<speech>",
    "▁</",
    "Speech",
    ">",
]  # one placeholder: CIF decides its length


def x_llm_processor(tokenizers) -> XLLMProcessor:
    llm, qformer = tokenizers
    return preset_processor("x-llm", llm, qformer)


def test_x_llm_prompt_with_an_image(tokenizers):
    llm, qformer = tokenizers
    batch = x_llm_processor(tokenizers)(text="<image>描述这张图片", images=[random_image(0)])
    # wrappers tokenized alone without special tokens (xllm.py:161-164), then '问：{}\n答：' (vl_instruction.py:56)
    # with the tokenizer's special tokens (xllm.py:1084): here the BOS, for ChatGLM [gMASK] <sop>.
    assert tokens(llm, batch["input_ids"][0]) == [
        *IMAGE_BLOCK, BOS, "▁问", "：", "描述", "这张", "图片", "\n", "答", "："
    ]  # fmt: skip
    assert tokens(qformer, batch["qformer_input_ids"][0]) == qformer_tokens("描述这张图片", qformer)


def test_x_llm_prompt_with_speech(tokenizers):
    llm, _ = tokenizers
    batch = x_llm_processor(tokenizers)(text="<speech>请回答语音中的问题", **media_for("<speech>"))
    assert tokens(llm, batch["input_ids"][0]) == [
        *SPEECH_BLOCK, BOS, "▁问", "：", "请", "回答", "语音", "中的", "问题", "\n", "答", "："
    ]  # fmt: skip


def test_x_llm_puts_the_image_block_before_the_speech_block(tokenizers):
    llm, _ = tokenizers
    text = "<speech> <image> 请回答语音中的问题"
    batch = x_llm_processor(tokenizers)(text=text, **media_for(text))
    # speech embeddings are prepended, then the image's before them (xllm.py:1016-1018; masr_forward :393-397)
    assert (
        tokens(llm, batch["input_ids"][0])[: len(IMAGE_BLOCK) + len(SPEECH_BLOCK)]
        == IMAGE_BLOCK + SPEECH_BLOCK
    )


def test_x_llm_two_turn_conversation_uses_chatglm_rounds(tokenizers):
    llm, _ = tokenizers
    text = XLLMPromptFormat().conversation_text([("<image>描述这张图片", "一只猫"), ("它是什么颜色", None)])
    assert text == "[Round 0]\n问：<image>描述这张图片\n答：一只猫\n[Round 1]\n问：它是什么颜色\n答："
    batch = x_llm_processor(tokenizers)(text=text, images=[random_image(0)])
    # "[Round {}]\n问：{}\n答：{}\n" per earlier turn, then "[Round {}]\n问：{}\n答：" (vsd_instruction.py:63-66)
    assert tokens(llm, batch["input_ids"][0]) == [
        *IMAGE_BLOCK, BOS, "▁[", "Round", "▁0", "]", "\n", "问", "：", "描述", "这张", "图片", "\n", "答", "：", "一只", "猫",
        "\n", "[", "Round", "▁1", "]", "\n", "问", "：", "它", "是", "什么", "颜色", "\n", "答", "：",
    ]  # fmt: skip


def test_x_llm_chat_template_renders_conversations_as_the_released_code(tokenizers):
    processor = x_llm_processor(tokenizers)
    image = random_image(0)
    conversation = [
        {
            "role": "user",
            "content": [{"type": "image", "image": image}, {"type": "text", "text": "描述这张图片"}],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "一只猫"}]},
        {"role": "user", "content": [{"type": "text", "text": "它是什么颜色"}]},
    ]
    chat = processor.apply_chat_template(conversation, tokenize=True, return_dict=True)
    text = XLLMPromptFormat().conversation_text([("<image>描述这张图片", "一只猫"), ("它是什么颜色", None)])
    assert chat["input_ids"].tolist() == processor(text=text, images=[image])["input_ids"].tolist()
    one_question = processor.apply_chat_template(conversation[:1], tokenize=True, return_dict=True)
    assert (
        one_question["input_ids"].tolist()
        == processor(text="<image>描述这张图片", images=[image])["input_ids"].tolist()
    )


def test_x_llm_english_twin_swaps_the_markers():
    assert (
        XLLMPromptFormat(language="en").conversation_text([("What is this?", None)])
        == "Question: What is this?\nAnswer:"
    )
    with pytest.raises(ValueError, match="`language` must be one of"):
        XLLMPromptFormat(language="fr")


def test_x_llm_rejects_media_it_has_no_wrapper_for(tokenizers):
    processor = XLLMProcessor(
        image_processor=BlipImageProcessor(),
        video_processor=XLLMVideoProcessor(),
        tokenizer=lavis_llm_tokenizer(),
        qformer_tokenizer=qformer_tokenizer(),
        num_query_tokens={"audio": 2},
        prompt_format="x-llm",
    )
    with pytest.raises(
        ValueError, match=r"wraps \['image', 'video', 'speech'\] inputs; the text has \['audio'\]"
    ):
        processor(text="<audio> hi", audio=[np.zeros(16000, dtype=np.float32)])


# --- config reading, presets, saving ---------------------------------------------------------------------------


def test_eval_yaml_is_laid_over_the_model_type_default():
    config = lavis_eval_config(FIXTURES / "discrn/audio_video_describe.yaml")
    assert config.model_type == "vicuna7b" and config.task == "discrn_qa"
    assert config.prompt_format == LavisPromptFormat(
        prompt="question: {} answer:",
        prefix=config.model["prefix"],
        postfix="\nASSISTANT:",  # not in the eval yaml: the 7b default's (blip2_xinstruct_vicuna7b.yaml:75)
        clean_tokenization=True,  # likewise (:77)
        add_space=True,
        special_qformer_input_prompt="a short description",
    )
    assert config.prompt_format.prefix.endswith(
        "by referece to its relative position (first or second, left or right) that best answers the question. "
    )
    assert (config.num_video_frames, config.num_audio_windows, config.modalities) == (
        2,
        2,
        ("audio", "video"),
    )


def test_paths_that_the_lavis_format_does_not_build_are_refused():
    with pytest.raises(ValueError, match="`use_caption: True`: captions in place of media"):
        lavis_eval_config(FIXTURES / "discrn/audio_video_caption.yaml")
    with pytest.raises(ValueError, match="`model.model_type` must be one of"):
        lavis_eval_config({"model": {"model_type": "vicuna33b"}})


def test_a_published_yaml_that_is_not_valid_yaml_is_read_section_by_section():
    with pytest.warns(UserWarning, match="objaverse_qa.yaml is not valid YAML"):
        config = lavis_eval_config(FIXTURES / "vicuna7b/pc/objaverse_qa.yaml")
    assert (config.task, config.prompt_format.prompt) == ("gqa", "based on the given input respond to {}")


def test_presets_choose_their_prompt_format_and_preprocessing(tokenizers):
    llm, qformer = tokenizers
    assert preset_prompt_format("tiny") == {"name": "parts"}
    assert preset_prompt_format("x-llm") == {"name": "x-llm", "language": "zh"}
    assert preset_prompt_format("x-instructblip-13b")["prefix"] == ""
    processor = preset_processor("x-instructblip-7b", llm, qformer)
    assert processor.prompt_format["prefix"] == "USER: " and processor.prompt_format["clean_tokenization"]
    assert (processor.video_processor.frame_sampling, processor.video_processor.num_frames) == ("headtail", 5)
    assert processor.audio_feature_extractor.num_windows == 2
    assert processor.point_cloud_feature_extractor.num_points == 8192
    assert processor.modality_cues is None  # the format writes the cues
    discrn = lavis_processor(tokenizers, "discrn/audio_video_describe")
    assert discrn.video_processor.num_frames == 2


def test_every_preset_has_a_processor_that_fits_its_point_encoder(tokenizers):
    llm, qformer = tokenizers
    for name in PRESETS:
        processor = preset_processor(name, llm, qformer)
        point_cloud_config = preset_config(name).encoder_config("point_cloud")
        if point_cloud_config is not None:
            assert processor.point_cloud_feature_extractor.in_channels == point_cloud_config.in_channels


def test_prompt_format_and_preprocessing_survive_save_and_load(tokenizers, tmp_path):
    processor = lavis_processor(tokenizers, "discrn/audio_video_describe_13b")
    processor.save_pretrained(tmp_path)
    reloaded = XLLMProcessor.from_pretrained(tmp_path)
    assert reloaded.prompt_format == processor.prompt_format
    assert prompt_format_from(reloaded.prompt_format).remove_start
    assert reloaded.video_processor.frame_sampling == "headtail"
    assert reloaded.audio_feature_extractor.num_windows == 2
    text = "<audio><video> which of the two options is louder"
    assert (
        reloaded(text=text, **media_for(text))["input_ids"].tolist()
        == processor(text=text, **media_for(text))["input_ids"].tolist()
    )


def test_bad_prompt_formats_are_named():
    with pytest.raises(
        ValueError, match=r"`prompt_format` must name one of \['parts', 'lavis', 'x-llm'\], got 'llava'"
    ):
        prompt_format_from("llava")
    with pytest.raises(ValueError, match=r"has no options \['suffix'\]"):
        prompt_format_from({"name": "lavis", "suffix": "x"})
    with pytest.raises(ValueError, match="writes its own cues; `modality_cues` must be None"):
        XLLMProcessor(
            image_processor=BlipImageProcessor(),
            video_processor=XLLMVideoProcessor(),
            tokenizer=lavis_llm_tokenizer(),
            qformer_tokenizer=qformer_tokenizer(),
            prompt_format="lavis",
            modality_cues={"image": "image: "},
        )


def test_a_format_token_the_tokenizer_lacks_is_named(tokenizers):
    llm, qformer = tokenizers
    processor = preset_processor("x-instructblip-13b", llm, qformer)
    processor.prompt_format = {**processor.prompt_format, "bos_token": "<bos-of-another-llm>"}
    with pytest.raises(
        ValueError, match="needs the token '<bos-of-another-llm>', which the LLM tokenizer lacks"
    ):
        processor(text="<image>", images=[random_image(0)])


def test_offsets_need_the_parts_format(tokenizers):
    processor = lavis_processor(tokenizers, "vicuna7b/image/coco_captioning_test")
    with pytest.raises(
        ValueError, match="`return_offsets_mapping` \\(assistant masks\\) needs the 'parts' prompt format"
    ):
        processor(text="<image>", images=[random_image(0)], return_offsets_mapping=True)


def test_split_media_keeps_the_text_around_placeholders():
    assert split_media("<audio><video> which is louder") == (["audio", "video"], "which is louder")
    assert split_media("问：<image>描述") == (["image"], "问：描述")
    assert split_media("Compare <image> and <video> please") == (["image", "video"], "Compare and please")
