"""Load the `evaluate` metrics that ship inside this package, by name and with no network.

The Hub versions of evaluate's canonical metrics cannot be fetched offline (and the Hub's bleu
downloads a helper at load time), so each metric here is a self-contained script in
``metrics/<name>/<name>.py``. ``evaluate.load`` accepts such a folder path: it copies the script
into its module cache and imports it from there. The scripts import shared code from the
installed package (``xllm.evaluation.caption_tokenizer``) rather than from sibling files, so one
tokenizer serves every caption metric without being copied into each folder.
"""

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import evaluate

METRICS_DIRECTORY = Path(__file__).with_name("metrics")


def available_metrics() -> list[str]:
    """Names of the metrics shipped with the package, sorted."""
    return sorted(
        folder.name for folder in METRICS_DIRECTORY.iterdir() if (folder / f"{folder.name}.py").is_file()
    )


def load_metric(name: str, **kwargs) -> "evaluate.EvaluationModule":
    """Load one of our metrics by name, e.g. ``load_metric("cider")``.

    Keyword arguments go to ``evaluate.load`` (``experiment_id``, ``keep_in_memory``, ...).
    """
    import evaluate  # here: importing it takes seconds, and `xllm --help` imports this module

    names = available_metrics()
    if name not in names:
        raise ValueError(f"name must be one of the shipped metrics {names}, got {name!r}")
    return evaluate.load(str(METRICS_DIRECTORY / name), **kwargs)
