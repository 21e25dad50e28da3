"""`xllm demo --fast`: the whole method on images and point clouds, end to end, with learning."""

import contextlib
import io
import json
import textwrap

import pytest
from transformers import AutoModelForMultimodalLM, pipeline

from xllm.cli import main
from xllm.world.vocabulary import ATTRIBUTES


@pytest.fixture(scope="module")
def fast_demo(tmp_path_factory):
    output = tmp_path_factory.mktemp("demo")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["demo", "--fast", "--output", str(output)]) == 0
    return output, json.loads((output / "report.json").read_text()), printed.getvalue()


def test_fast_demo_ends_by_saying_how_to_talk_to_its_model(fast_demo):
    output, report, printed = fast_demo
    model = report["model"]
    for way in (f"xllm chat {model} -i", f"xllm chat {model} --web", f"xllm serve {model}"):
        assert way in printed
    client_example = textwrap.dedent(printed[printed.index("    from openai import OpenAI") :])
    compile(client_example, "demo output", "exec")  # the printed example is valid Python
    assert "client.chat.completions.create(" in client_example


def test_fast_demo_writes_the_report_plots_and_a_loadable_model(fast_demo):
    output, report, _ = fast_demo
    for name in ("report.md", "report.json", "losses.png", "results.png"):
        assert (output / name).stat().st_size > 0
    assert set(report["results"]["captioning"]) == {"image", "point_cloud"}
    assert set(report["results"]["discrn"]["image_point_cloud"]) >= {"x-llm", "caption_baseline", "chance"}
    assert {"stage 0: language model", "stage 2: alignment", "evaluate"} <= set(report["timings_seconds"])
    model = AutoModelForMultimodalLM.from_pretrained(output / "model")
    assert set(model.config.modalities) == {"image", "point_cloud"}
    chat = pipeline("any-to-any", model=str(output / "model"))
    messages = [{"role": "user", "content": [{"type": "text", "text": "which of the two is red ?"}]}]
    assert chat(text=messages, max_new_tokens=2)[0]["generated_text"]


def test_fast_demo_learns_more_than_chance(fast_demo):
    _, report, _ = fast_demo
    language_model = report["losses"]["stage 0: language model"]
    assert language_model[-1] < 0.3 * language_model[0]
    alignment = report["losses"]["stage 2: alignment"]
    assert alignment[-1] < alignment[0]
    for modality in ("image", "point_cloud"):
        colour = report["results"]["captioning"][modality]["attributes"]["colour"]
        assert colour["low"] > 1 / len(ATTRIBUTES[modality]["colour"]), modality  # above chance, 95% interval
