"""Evaluation: offline `evaluate` metrics shipped with the package, runners, DisCRn."""

from .metric_loading import available_metrics, load_metric

__all__ = ["available_metrics", "load_metric"]
