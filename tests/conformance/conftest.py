"""Markers transformers' own conftest registers, used by the common tests we run from its sdist."""

TRANSFORMERS_MARKERS = (
    "flash_attn_test",
    "flash_attn_3_test",
    "flash_attn_4_test",
    "torch_compile_test",
    "torch_export_test",
    "generate",
    "is_training_test",
    "bitsandbytes",
)


def pytest_configure(config):
    for marker in TRANSFORMERS_MARKERS:
        config.addinivalue_line("markers", f"{marker}: a marker of transformers' own test suite")
