"""The demo report's targets section: each miss is named with the stage its measurements point to."""

from xllm.demo.report import markdown_report, target_lines


def _accuracy(value: float, low: float | None = None) -> dict:
    return {"accuracy": value, "low": value - 0.05 if low is None else low, "high": value + 0.05, "n": 300}


def _report(image_shape: float, encoder_shape: float, discrn_low: float) -> dict:
    return {
        "timings_seconds": {"world": 1.0},
        "diagnostics": {
            "encoder_image_test_shape": encoder_shape,
            "llm_text_comparison_image_point_cloud": 0.97,
        },
        "results": {
            "captioning": {
                "image": {
                    "cider": 1.0,
                    "attributes": {"colour": _accuracy(0.95), "shape": _accuracy(image_shape)},
                    "examples": [],
                }
            },
            "speech": {"wer": 0.1, "exact_transcripts": _accuracy(0.5)},
            "discrn": {"image_point_cloud": {"x-llm": {**_accuracy(0.6, discrn_low), "invalid_rate": 0.0}}},
        },
    }


def test_a_missed_attribute_points_to_the_encoder_or_the_interface():
    by_encoder = "\n".join(target_lines(_report(image_shape=0.3, encoder_shape=0.4, discrn_low=0.55)))
    assert (
        "missed: image shape 30.0%" in by_encoder and "stage-0 encoder itself reads it at 40%" in by_encoder
    )
    by_interface = "\n".join(target_lines(_report(image_shape=0.3, encoder_shape=0.99, discrn_low=0.55)))
    assert "encoder reads it at 99%: the interface loses it" in by_interface
    assert "colour" not in by_interface  # 95%: met, not listed
    assert "met: speech WER 10.0%" in by_interface


def test_discrn_says_whether_its_interval_is_above_chance():
    above = "\n".join(target_lines(_report(0.95, 0.99, discrn_low=0.55)))
    assert "missed: DisCRn image_point_cloud 60.0%" in above and "above chance" in above
    assert "NOT above chance" not in above and "true captions at 97%" in above
    below = "\n".join(target_lines(_report(0.95, 0.99, discrn_low=0.45)))
    assert "NOT above chance" in below


def test_report_has_a_targets_section():
    assert "## Targets" in markdown_report(_report(0.95, 0.99, discrn_low=0.55))
