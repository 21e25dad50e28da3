"""`python -m xllm COMMAND ...`, the same as `xllm COMMAND ...` (what `torchrun -m xllm train` launches)."""

import sys

from xllm.cli import main

sys.exit(main())
