"""Peak memory of a piece of work, for the benchmarks that report it.

torch allocates tensors outside Python's allocator, so `tracemalloc` would not see them; the resident
set size does. Linux keeps its high-water mark (`VmHWM`), which writing 5 to `/proc/self/clear_refs`
resets to the current size: the growth of the mark over the work is what it needed.
"""

import re
from collections.abc import Callable


def memory_status_kib(field: str) -> int:
    """A field of /proc/self/status: VmRSS (resident now) or VmHWM (resident at peak), in KiB."""
    with open("/proc/self/status") as status:
        return int(re.search(rf"{field}:\s+(\d+) kB", status.read()).group(1))


def peak_growth_mib(work: Callable[[], object]) -> float:
    """How far `work` raises the resident set size at its peak, in MiB (run it in a fresh process: the
    mark counts every allocation of the process since the reset)."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # resets VmHWM to the current resident set size
    before = memory_status_kib("VmRSS")
    work()
    return (memory_status_kib("VmHWM") - before) / 1024
