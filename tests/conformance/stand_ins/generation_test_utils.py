"""Stand-in for transformers' `tests/generation/test_utils.py`, which the sdist lacks.

`test_modeling_common.py` imports `GenerationTesterMixin` from it only to check whether a test class
inherits it; ours do not, so the empty mixin is all that is needed. What the real mixin checks
(greedy / sample / beam equivalences, cache vs no cache, left padding) is covered by our own tests
(tests/test_generation_equivalence.py).
"""


class GenerationTesterMixin:
    pass
