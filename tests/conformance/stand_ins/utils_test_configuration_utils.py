"""Stand-in for transformers' `tests/utils/test_configuration_utils.py`, which the sdist lacks.

`ConfigTester.check_config_arguments_init` reads `config_common_kwargs`: arguments every
`PreTrainedConfig` takes, with values different from their defaults. It returns early for configs
with sub-configs (ours has them), so these values are only checked on configs without any.
"""

config_common_kwargs = {
    "return_dict": False,
    "output_hidden_states": True,
    "output_attentions": True,
    "dtype": "float16",
    "architectures": ["BertModel"],
    "id2label": {0: "label"},
    "label2id": {"label": "0"},
    "problem_type": "regression",
}
