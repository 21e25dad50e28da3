"""lmms-eval's own evaluator runs an X-LLM checkpoint through the `xllm` plugin, on local YAML tasks over
datasets saved to disk, and scores what `xllm evaluate` scores on the same items.

lmms-eval lives in its own venv (`make test-lmms-eval`); where it is not installed these tests are skipped.
"""

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip(
    "lmms_eval.api.model",
    reason="lmms-eval is not installed in this venv; `make test-lmms-eval` runs these tests in .venv-lmms-eval",
)

import torch
import yaml
from conftest import random_image
from datasets import Audio, Dataset, DatasetDict, Features, Image, Value
from lmms_eval.api.instance import Instance, unwrap_generation_output
from lmms_eval.evaluator import simple_evaluate
from lmms_eval.models import get_model
from lmms_eval.tasks import TaskManager
from media_files import mp4_bytes, tone, wav_bytes

from xllm.cli import main
from xllm.evaluation.generation import generate_answers
from xllm.evaluation.likelihood import score_candidates
from xllm.evaluation.tasks import SHORT_ANSWER_GENERATION
from xllm.lmms_eval_model import XLLMLmmsEval, content_part, generation_settings

QUESTIONS = ["what colour is it?", "which shape is this?", "what is in the image?", "how many are there?"]
# lmms-eval's VQAv2 prompt (lmms_eval/tasks/vqav2/vqav2_val.yaml): the question, then this.
POST_PROMPT = "\nAnswer the question using a single word or phrase."
CLASSES = ["blue", "green", "red"]
# The task's decoding (LAVIS OK-VQA's), with fewer beams and tokens to keep the tests fast; `xllm evaluate`
# is given the same through its flags.
GENERATION = {**SHORT_ANSWER_GENERATION, "num_beams": 2, "max_new_tokens": 4}
FAST_VQA = ("--task", "vqa", "--num-beams", "2", "--max-new-tokens", "4")
# The test's task folder: lmms-eval's own VQAv2 functions (prompt, image, scoring) and the README's.
TASK_UTILS = """from lmms_eval.tasks.vqav2.utils import vqav2_doc_to_text, vqav2_doc_to_visual, vqav2_process_results_val


def doc_to_visual(doc):
    return [doc["image"].convert("RGB")]


def clip_or_video(doc):
    return [doc["clip"]] if doc["clip"] is not None else [doc["video"]]
"""


def run_xllm_evaluate(
    folder: Path, checkpoint: Path, rows: list[dict], *flags: str
) -> tuple[dict, list[str]]:
    """`xllm evaluate` on `rows` written as a JSONL manifest: its metrics and predictions."""
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    output = folder / "xllm_evaluate"
    assert main(["evaluate", "--model", str(checkpoint), "--data", str(manifest), "--output", str(output),
                 "--batch-size", "2", "--device", "cpu", *flags]) == 0  # fmt: skip
    report = json.loads((output / "report.json").read_text())
    lines = (output / "predictions.jsonl").read_text().splitlines()
    return report["metrics"], [json.loads(line)["prediction"] for line in lines]


def save_dataset(folder: Path, columns: dict, features: Features) -> None:
    """The rows as the "test" split of a dataset saved with `save_to_disk`."""
    DatasetDict({"test": Dataset.from_dict(columns, features=features)}).save_to_disk(str(folder))


def write_task(folder: Path, name: str, config: dict, columns: dict, features: Features) -> None:
    """A task YAML (with the test's utils.py) over a dataset saved with `save_to_disk`, loaded back with
    lmms-eval's `dataset_kwargs: {load_from_disk: true}` (`ConfigurableTask.download`)."""
    save_dataset(folder / f"{name}_data", columns, features)
    config = {"task": name, "dataset_path": str(folder / f"{name}_data"), "dataset_kwargs": {"load_from_disk": True},
              "test_split": "test", **config}  # fmt: skip
    # lmms-eval's YAML tag for a function of the task folder's utils.py, unquoted (safe_dump quotes it).
    text = re.sub(r"'(!function utils\.\w+)'", r"\1", yaml.safe_dump(config, sort_keys=False))
    (folder / f"{name}.yaml").write_text(text)
    (folder / "utils.py").write_text(TASK_UTILS)


def run_lmms_eval(folder: Path, checkpoint: Path, task: str, model_args: str = "") -> dict:
    """lmms-eval's `simple_evaluate` with `--model xllm` (resolved through the entry point)."""
    return simple_evaluate(
        model="xllm",
        model_args=f"pretrained={checkpoint}{model_args}",
        tasks=[task],
        batch_size=2,
        device="cpu",
        task_manager=TaskManager(include_path=str(folder), include_defaults=False),
        bootstrap_iters=0,
        log_samples=True,
    )


@pytest.fixture
def images(tmp_path) -> list[str]:
    """Six image files next to the test's manifest (which names them relative to itself)."""
    paths = []
    for seed in range(6):
        path = tmp_path / f"image{seed}.png"
        random_image(seed, size=24).save(path)
        paths.append(str(path))
    return paths


def test_the_entry_point_registers_the_model_with_lmms_eval():
    assert get_model("xllm") is XLLMLmmsEval


def test_vqa_generation_scores_equal_xllm_evaluate(tmp_path, saved_tiny_dir, images):
    questions = [QUESTIONS[i % len(QUESTIONS)] + POST_PROMPT for i in range(4)]
    rows = [
        {"id": i, "images": Path(images[i]).name, "prompt": questions[i], "answers": ["none"]}
        for i in range(4)
    ]
    _, first = run_xllm_evaluate(tmp_path, saved_tiny_dir, rows, *FAST_VQA)
    # Ten answers per item, 0, 1, 3 and 10 of them the model's own: accuracies 0, 0.3, 0.9 and 1 (VQAv2).
    answers = [
        [first[i]] * count + [f"other{j}" for j in range(10 - count)] for i, count in enumerate([0, 1, 3, 10])
    ]
    rows = [{**row, "answers": answers[i]} for i, row in enumerate(rows)]
    metrics, predictions = run_xllm_evaluate(tmp_path, saved_tiny_dir, rows, *FAST_VQA)
    assert predictions == first and metrics["vqa_accuracy"] > 0

    columns = {
        "question_id": list(range(4)),
        "question": [QUESTIONS[i % len(QUESTIONS)] for i in range(4)],
        "image": images[:4],
        "answer": [a[0] for a in answers],
        "answers": [[{"answer": a, "answer_id": j} for j, a in enumerate(item)] for item in answers],
    }
    features = Features({"question_id": Value("int64"), "question": Value("string"), "image": Image(),
                         "answer": Value("string"),
                         "answers": [{"answer": Value("string"), "answer_id": Value("int64")}]})  # fmt: skip
    config = {
        "output_type": "generate_until",
        "doc_to_visual": "!function utils.vqav2_doc_to_visual",
        "doc_to_text": "!function utils.vqav2_doc_to_text",
        "doc_to_target": "answer",
        "generation_kwargs": dict(GENERATION),
        "process_results": "!function utils.vqav2_process_results_val",
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
        "lmms_eval_specific_kwargs": {"default": {"pre_prompt": "", "post_prompt": POST_PROMPT}},
    }
    write_task(tmp_path, "xllm_local_vqa", config, columns, features)
    results = run_lmms_eval(tmp_path, saved_tiny_dir, "xllm_local_vqa")

    samples = sorted(results["samples"]["xllm_local_vqa"], key=lambda sample: sample["doc_id"])
    assert [sample["filtered_resps"][0] for sample in samples] == predictions
    assert results["results"]["xllm_local_vqa"]["exact_match,none"] == pytest.approx(
        metrics["vqa_accuracy"], abs=1e-12
    )


def test_multiple_choice_scores_equal_xllm_evaluate_by_likelihood(tmp_path, saved_tiny_dir, images):
    prompt = "which colour is it?"
    rows = [
        {"id": i, "images": Path(images[i]).name, "prompt": prompt, "label": CLASSES[i % 3]} for i in range(6)
    ]
    likelihood = ("--task", "classification", "--classify-by", "likelihood")
    _, first = run_xllm_evaluate(tmp_path, saved_tiny_dir, rows, *likelihood)
    # The last three items labelled with the model's own choice (the first three keep every class present).
    rows = [{**row, "label": first[i] if i >= 3 else row["label"]} for i, row in enumerate(rows)]
    metrics, predictions = run_xllm_evaluate(tmp_path, saved_tiny_dir, rows, *likelihood)
    assert predictions == first and metrics["accuracy"] >= 0.5

    columns = {"question": [prompt] * 6, "image": images, "label": [row["label"] for row in rows]}
    features = Features({"question": Value("string"), "image": Image(), "label": Value("string")})
    # The README's task YAML, its dataset saved where it says.
    save_dataset(tmp_path / "choice_data", columns, features)
    (tmp_path / "xllm_local_choice.yaml").write_text(
        readme_block("yaml", "task: xllm_local_choice").replace("TASKS", str(tmp_path))
    )
    (tmp_path / "utils.py").write_text(TASK_UTILS)
    results = run_lmms_eval(tmp_path, saved_tiny_dir, "xllm_local_choice")

    assert results["results"]["xllm_local_choice"]["acc,none"] == pytest.approx(
        metrics["accuracy"], abs=1e-12
    )
    samples = sorted(results["samples"]["xllm_local_choice"], key=lambda sample: sample["doc_id"])
    negative_log_likelihoods = torch.tensor([[resp[0][0] for resp in sample["resps"]] for sample in samples])
    assert [CLASSES[i] for i in negative_log_likelihoods.argmin(1).tolist()] == predictions

    # The README's command line, on this task, scores the same.
    output = tmp_path / "lmms_eval_output"
    command = readme_lmms_eval_command({"CHECKPOINT": str(saved_tiny_dir), "TASKS": str(tmp_path)})
    subprocess.run([*command, "--output_path", str(output)], check=True, capture_output=True, timeout=600)
    [report] = output.rglob("*results.json")
    scores = json.loads(report.read_text())["results"]["xllm_local_choice"]
    assert scores["acc,none"] == pytest.approx(metrics["accuracy"], abs=1e-12)


@pytest.mark.parametrize("audio_modality", ["audio", "speech"])
def test_audio_and_video_documents_are_answered_as_by_xllm_evaluate(tmp_path, saved_tiny_dir, audio_modality):
    """lmms-eval's forms: a `datasets.Audio` column (torchcodec decoders) and video file paths."""
    for i in range(2):
        (tmp_path / f"clip{i}.wav").write_bytes(wav_bytes(0.6 + 0.5 * i, 300.0 + 200 * i))
        (tmp_path / f"clip{i}.mp4").write_bytes(mp4_bytes(frames=6, seed=i))
    question = "what is it?"
    rows = [{"id": i, audio_modality: f"clip{i}.wav", "prompt": question, "answers": ["x"]} for i in range(2)]
    rows += [{"id": 2 + i, "videos": f"clip{i}.mp4", "prompt": question, "answers": ["x"]} for i in range(2)]
    _, predictions = run_xllm_evaluate(tmp_path, saved_tiny_dir, rows, *FAST_VQA)

    columns = {
        "question": [question] * 4,
        "clip": [str(tmp_path / "clip0.wav"), str(tmp_path / "clip1.wav"), None, None],
        "video": [None, None, str(tmp_path / "clip0.mp4"), str(tmp_path / "clip1.mp4")],
        "answer": ["x"] * 4,
    }
    features = Features({"question": Value("string"), "clip": Audio(), "video": Value("string"),
                         "answer": Value("string")})  # fmt: skip
    config = {
        "output_type": "generate_until",
        "doc_to_visual": "!function utils.clip_or_video",
        "doc_to_text": "{{question}}",
        "doc_to_target": "answer",
        "generation_kwargs": dict(GENERATION),
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
    }
    write_task(tmp_path, "xllm_local_media", config, columns, features)
    results = run_lmms_eval(tmp_path, saved_tiny_dir, "xllm_local_media", f",audio_modality={audio_modality}")

    samples = sorted(results["samples"]["xllm_local_media"], key=lambda sample: sample["doc_id"])
    assert [sample["filtered_resps"][0] for sample in samples] == predictions


def test_loglikelihood_answers_are_negated_summed_log_likelihoods(saved_tiny_dir, images):
    lm = XLLMLmmsEval(pretrained=str(saved_tiny_dir), device="cpu", batch_size=2)
    docs = [{"image": random_image(seed, size=24)} for seed in range(3)]
    lm.task_dict = {"task": {"test": docs}}
    visuals = lambda doc: [doc["image"]]  # noqa: E731
    requests = [
        Instance("loglikelihood", ("what is it?", choice, visuals, doc_id, "task", "test"), idx, metadata=metadata(doc_id))
        for doc_id in range(3) for idx, choice in enumerate(["red", "blue square"])
    ]  # fmt: skip
    results = lm.loglikelihood(requests)
    answers = [unwrap_generation_output(result)[0] for result in results]  # what lmms-eval's scoring gets

    prompts = [lm.prompt("what is it?", [doc["image"]]) for doc in docs]
    expected = score_candidates(lm.model, lm.processor, prompts, ["red", "blue square"], progress=False)
    got = torch.tensor([nll for nll, _ in answers]).view(3, 2)
    torch.testing.assert_close(got, -expected, rtol=0, atol=1e-5)
    assert all(isinstance(greedy, bool) for _, greedy in answers)


def test_text_only_loglikelihood_requests_of_acc_mutual_info_are_scored(saved_tiny_dir):
    # lmms-eval's multiple-choice tasks with `acc_mutual_info` add (context, continuation) requests, context "".
    lm = XLLMLmmsEval(pretrained=str(saved_tiny_dir), device="cpu")
    requests = [
        Instance("loglikelihood", ("", choice), i, metadata=metadata(0)) for i, choice in enumerate(CLASSES)
    ]
    answers = [unwrap_generation_output(result)[0] for result in lm.loglikelihood(requests)]
    expected = score_candidates(lm.model, lm.processor, [lm.prompt("", None)], CLASSES, progress=False)
    torch.testing.assert_close(torch.tensor([[nll for nll, _ in answers]]), -expected, rtol=0, atol=1e-5)


def test_generate_until_cuts_at_the_stop_strings_and_batches_by_settings(saved_tiny_dir):
    lm = XLLMLmmsEval(pretrained=str(saved_tiny_dir), device="cpu", batch_size=2)
    docs = [{"image": random_image(seed, size=24)} for seed in range(3)]
    lm.task_dict = {"task": {"test": docs}}
    visuals = lambda doc: [doc["image"]]  # noqa: E731
    greedy = {"max_new_tokens": 6, "temperature": 0, "do_sample": False, "top_p": None, "num_beams": 1}
    beams = {"max_new_tokens": 4, "num_beams": 3}
    kwargs = [greedy, beams, greedy]
    requests = [Instance("generate_until", ("what is it?", dict(kwargs[i]), visuals, i, "task", "test"), 0,
                         metadata=metadata(i)) for i in range(3)]  # fmt: skip
    answers = lm.generate_until(requests)

    prompts = [lm.prompt("what is it?", [doc["image"]]) for doc in docs]
    settings = {"max_new_tokens": 6, "do_sample": False, "num_beams": 1}
    alone = [generate_answers(lm.model, lm.processor, [p], s, progress=False)[0]
             for p, s in zip(prompts, [settings, beams, settings], strict=True)]  # fmt: skip
    assert answers == alone
    stop = alone[0].split()[1] if len(alone[0].split()) > 1 else alone[0]
    requests[0].arguments[1]["until"] = [stop]
    assert lm.generate_until(requests[:1]) == [alone[0].split(stop)[0]]


def test_multi_round_generation_follows_the_tasks_doc_to_text(saved_tiny_dir):
    lm = XLLMLmmsEval(pretrained=str(saved_tiny_dir), device="cpu", batch_size=2)
    docs = [{"image": random_image(seed, size=24), "question": QUESTIONS[seed]} for seed in range(2)]
    lm.task_dict = {"task": {"test": docs}}

    def doc_to_text(doc, previous_output=None, round_idx=None, previous_round_info=None):
        if round_idx == 1:
            return [doc["image"]], "again: " + previous_output[-1], False, previous_output, None
        return None, None, True, previous_output, None

    settings = {"max_new_tokens": 4, "num_beams": 1, "do_sample": False}
    requests = [
        Instance("generate_until_multi_round", (doc["question"], dict(settings), lambda d: [d["image"]], doc_to_text,
                 i, "task", "test"), 0, metadata=metadata(i))
        for i, doc in enumerate(docs)
    ]  # fmt: skip
    rounds = lm.generate_until_multi_round(requests)

    first = generate_answers(lm.model, lm.processor, [lm.prompt(d["question"], [d["image"]]) for d in docs],
                             settings, progress=False)  # fmt: skip
    again = [lm.prompt("again: " + answer, [d["image"]]) for answer, d in zip(first, docs, strict=True)]
    second = generate_answers(lm.model, lm.processor, again, settings, progress=False)
    assert rounds == [[a, b] for a, b in zip(first, second, strict=True)]


def test_placeholders_in_the_tasks_text_place_its_media(saved_tiny_dir):
    # Interleaved tasks (MMMU-Pro, MM-Vet v2) write `<image>` where each image goes.
    lm = XLLMLmmsEval(pretrained=str(saved_tiny_dir), device="cpu")
    first, second = random_image(0), random_image(1)
    prompt = lm.prompt("first <image> or <image>?", [first, second])
    assert prompt.conversation[0]["content"] == [
        {"type": "text", "text": "first "}, {"type": "image", "image": first}, {"type": "text", "text": " or "},
        {"type": "image", "image": second}, {"type": "text", "text": "?"},
    ]  # fmt: skip
    assert lm.prompt("what is it?", [first]).conversation[0]["content"][0] == {
        "type": "image",
        "image": first,
    }
    with pytest.raises(ValueError, match=r"placeholders for \['image'\] but gives \['image', 'image'\]"):
        lm.prompt("first <image>?", [first, second])


def test_importing_the_module_before_lmms_eval_still_registers_the_model():
    # The entry point is a function: a module-level manifest would import lmms_eval.models half-way.
    code = "import xllm.lmms_eval_model; from lmms_eval.models import get_model; print(get_model('xllm').__name__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout.split()[-1] == "XLLMLmmsEval" and "Failed to load" not in result.stdout + result.stderr
    )


def test_lmms_eval_media_become_content_parts_of_the_right_modality():
    image = random_image(0)
    clip = {"array": tone(0.5, 440.0), "sampling_rate": 16000}
    assert content_part(image, "audio") == {"type": "image", "image": image}
    assert content_part("/data/clip.mp4", "audio") == {"type": "video", "video": "/data/clip.mp4"}
    assert content_part("/data/clip", "audio")["type"] == "video"  # lmms-eval: any other path is a video
    assert content_part("/data/speech.wav", "speech") == {"type": "speech", "speech": "/data/speech.wav"}
    assert content_part("/data/cloud.npy", "audio")["type"] == "point_cloud"
    assert content_part(clip, "audio") == {"type": "audio", "audio": clip}
    with pytest.raises(ValueError, match="PIL images, media file paths.*got int"):
        content_part(3, "audio")


def test_task_generation_kwargs_become_generate_settings():
    settings, until = generation_settings(
        {
            "max_new_tokens": 16,
            "temperature": 0,
            "top_p": None,
            "num_beams": 1,
            "until": "\n\n",
            "image_aspect_ratio": "original",
        }  # fmt: skip
    )
    assert settings == {"max_new_tokens": 16, "num_beams": 1, "do_sample": False} and until == ["\n\n"]


def test_model_args_reach_the_model_and_processor(saved_tiny_dir):
    # As lmms-eval's `key=value` parsing gives them (numbers as numbers, the CLI's --batch_size as a string).
    lm = XLLMLmmsEval.create_from_arg_string(
        f"pretrained={saved_tiny_dir},prompt_format=x-llm,dtype=bfloat16,audio_modality=speech",
        {"batch_size": "3", "device": "cpu"},
    )
    assert lm.processor.prompt_format["name"] == "x-llm" and lm.model.dtype == torch.bfloat16
    assert lm.audio_modality == "speech" and lm.batch_size == 3 and lm.device.type == "cpu"
    assert content_part("clip.wav", lm.audio_modality)["type"] == "speech"


@pytest.mark.parametrize(
    "args, message",
    [
        ({"pretrained": None}, "needs pretrained=FOLDER"),
        ({"batch_size": "auto"}, "batch_size must be a positive integer"),
        ({"dtype": "float8"}, "dtype must be one of"),
        ({"audio_modality": "sound"}, "audio_modality must be 'speech' or 'audio'"),
        ({"conv_template": "vicuna"}, r"Unknown model args \['conv_template'\]"),
        ({"max_batch_size": 8}, "--max_batch_size is for --batch_size auto"),
        ({"prompt_format": "llava"}, "`prompt_format` must name one of"),
    ],
)
def test_bad_model_args_are_named(saved_tiny_dir, args, message):
    with pytest.raises(ValueError, match=message):
        XLLMLmmsEval(**{"pretrained": str(saved_tiny_dir), "device": "cpu", **args})


def test_media_of_a_modality_the_model_lacks_is_refused(tmp_path):
    from xllm.testing import tiny_model_and_processor

    model, processor = tiny_model_and_processor(
        speech_model_type=None, audio_model_type=None, point_clouds=False
    )
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    lm = XLLMLmmsEval(pretrained=str(tmp_path), device="cpu")
    with pytest.raises(ValueError, match=r"gives \['audio'\] media.*it has \['image', 'video'\]"):
        lm.prompt("what is heard?", [{"array": tone(0.5, 440.0), "sampling_rate": 16000}])


def readme_block(language: str, containing: str) -> str:
    """The README's code block of `language` that contains `containing`."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    [block] = [b for b in re.findall(rf"```{language}\n(.*?)```", readme, flags=re.DOTALL) if containing in b]
    return block


def readme_lmms_eval_command(names: dict[str, str]) -> list[str]:
    """The README's `lmms-eval` line over a local task folder, with the names it uses replaced."""
    [line] = [line for line in readme_block("sh", "--include_path").splitlines() if "--include_path" in line]
    for name, value in names.items():
        line = line.replace(name, value)
    executable = shutil.which("lmms-eval", path=str(Path(sys.executable).parent))
    assert executable is not None, "lmms-eval's console script is not installed next to this Python"
    return [executable, *shlex.split(line)[1:]]


def metadata(doc_id: int) -> dict:
    return {"task": "task", "doc_id": doc_id, "repeats": 1}
