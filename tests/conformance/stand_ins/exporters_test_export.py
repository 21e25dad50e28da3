"""Stand-in for transformers' `tests/exporters/test_export.py`, which the sdist lacks.

`ModelTesterMixin` derives from `ExportTesterMixin`, whose tests export models with `torch.export`;
this empty mixin leaves those tests out.
"""


class ExportTesterMixin:
    pass
