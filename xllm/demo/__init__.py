"""`xllm demo`: the embedded default. The whole method, for real, on a synthetic world, on a CPU.

See `pipeline.py` for the phases, `settings.py` for every step budget and `report.py` for the report;
the command is `xllm/commands/demo.py`.
"""

from .pipeline import Demo
from .report import write_demo_report
from .settings import DemoSettings

__all__ = ["Demo", "DemoSettings", "write_demo_report"]
