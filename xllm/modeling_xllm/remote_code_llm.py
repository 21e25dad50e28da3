"""An LLM that runs its own code (`auto_map`, `trust_remote_code`) inside a composed X-LLM folder.

transformers resolves a remote-code config or model only at the top level of a folder; a composite config's
sub-config with an unknown `model_type` is an error (`SubConfigSpec.get_config_class`). So:

* saving copies the LLM's code files into the folder (transformers' `custom_object_save`) and keeps its
  `auto_map` inside `text_config`, with `AutoModel` naming the backbone class the composed model holds;
* reading `config.json` runs no code: such a `text_config` becomes an `UnresolvedRemoteCodeConfig`, which
  holds the saved values (widths and vocabulary size, what `XLLMConfig` checks);
* building the model from a folder (`from_pretrained`, also through the Auto classes, which pass the caller's
  `trust_remote_code` on to it) asks for the consent as transformers does (`resolve_trust_remote_code`), then
  takes the LLM's config and backbone classes from that folder's code (`get_class_from_dynamic_module`).

The config cannot resolve the code itself: the Auto classes read `config.json` before the model class is
known and do not pass `trust_remote_code` to the config.
"""

import os
from contextvars import ContextVar
from typing import NamedTuple

from torch import nn
from transformers import AutoModel, PreTrainedConfig
from transformers.dynamic_module_utils import (
    custom_object_save,
    get_class_from_dynamic_module,
    resolve_trust_remote_code,
)
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.utils import TRANSFORMERS_DYNAMIC_MODULE_NAME

# What `get_class_from_dynamic_module` takes to find code files where `from_pretrained` found the weights.
CODE_LOCATION_KWARGS = (
    "cache_dir",
    "force_download",
    "proxies",
    "token",
    "revision",
    "local_files_only",
    "code_revision",
)


class UnresolvedRemoteCodeConfig(PreTrainedConfig):
    """The saved `text_config` of an LLM whose config and model classes are its own code, before the caller
    allowed running that code. It keeps every saved value (and the LLM's `model_type`) and serializes back
    to the same dict; `resolve_text_config` turns it into the LLM's own config."""

    model_type = "xllm_unresolved_remote_code"

    def to_dict(self) -> dict:
        output = super().to_dict()
        output["model_type"] = self.model_type  # the LLM's, set from the saved dict
        return output


def needs_remote_code(text_config: object) -> bool:
    """Whether a `text_config` read from `config.json` names a model type transformers does not know and
    the code (`auto_map["AutoConfig"]`) that defines it."""
    return (
        isinstance(text_config, dict)
        and text_config.get("model_type") not in CONFIG_MAPPING
        and "AutoConfig" in (text_config.get("auto_map") or {})
    )


class CodeSource(NamedTuple):
    """Where `from_pretrained` loads from, and what the caller said about running that folder's code."""

    folder: str | os.PathLike | None
    trust_remote_code: bool | None
    location: dict


# Set by `XLLMPreTrainedModel.from_pretrained` while it builds the model.
CODE_SOURCE: ContextVar[CodeSource | None] = ContextVar("CODE_SOURCE", default=None)


def code_source(folder: str | os.PathLike | None, from_pretrained_kwargs: dict) -> CodeSource:
    location = {k: from_pretrained_kwargs[k] for k in CODE_LOCATION_KWARGS if k in from_pretrained_kwargs}
    return CodeSource(folder, from_pretrained_kwargs.get("trust_remote_code"), location)


def resolve_text_config(text_config: PreTrainedConfig, source: CodeSource | None) -> PreTrainedConfig:
    """The LLM's own config for an `UnresolvedRemoteCodeConfig` (any other config as it is), with its classes
    from `source.folder`'s code once the caller allowed it; the backbone class is registered with `AutoModel`
    for that config class, so that `XLLMModel` builds it with `AutoModel.from_config`."""
    # By its `model_type`, not `isinstance`: where this folder runs as remote code, transformers loads the configuration and modeling
    # files as separate packages, each with its own copy of this module.
    if type(text_config).model_type != UnresolvedRemoteCodeConfig.model_type:
        return text_config
    if source is None or source.folder is None:
        raise ValueError(
            f"`text_config` is an LLM that runs its own code (model type {text_config.model_type!r}, `auto_map` "
            f"{text_config.auto_map}): build the model with `from_pretrained(folder, trust_remote_code=True)` from "
            "the folder that holds that code."
        )
    folder = str(source.folder)
    resolve_trust_remote_code(
        source.trust_remote_code,
        folder,
        has_local_code=False,
        has_remote_code=True,
        error_message=(
            f"The LLM of {folder} (model type {text_config.model_type!r}) runs its own code, which must be executed "
            "to load the model."
        ),
    )
    auto_map = text_config.auto_map
    if "AutoModel" not in auto_map:
        raise ValueError(
            f"`text_config.auto_map` must name the LLM backbone class under `AutoModel`, got {auto_map}."
        )
    config_class = get_class_from_dynamic_module(auto_map["AutoConfig"], folder, **source.location)
    model_class = get_class_from_dynamic_module(auto_map["AutoModel"], folder, **source.location)
    resolved = config_class.from_dict(text_config.to_dict())
    resolved._name_or_path = folder  # the code is this folder's, not the LLM's original one
    for name in (
        "_attn_implementation_internal",
        "_experts_implementation_internal",
    ):  # set by from_pretrained
        if name in vars(text_config):
            setattr(resolved, name, getattr(text_config, name))
    # As `from_pretrained_parts` does for a trusted LLM: `AutoModel.from_config` would ask for the consent again.
    AutoModel.register(config_class, model_class, exist_ok=True)
    return resolved


def save_llm_code(
    language_model: nn.Module, text_config: PreTrainedConfig, folder: str | os.PathLike
) -> None:
    """For an LLM that runs its own code: its config's and backbone's code files into `folder`, and
    `text_config.auto_map["AutoModel"]` set to the backbone class this model holds (a remote LLM's own
    `AutoModel` entry may be its causal-LM class, e.g. ChatGLM's; the weights saved are the backbone's).
    Any other LLM: nothing."""
    dynamic = [
        obj
        for obj in (text_config, language_model)
        if type(obj).__module__.startswith(f"{TRANSFORMERS_DYNAMIC_MODULE_NAME}.")
    ]
    if not dynamic or "AutoConfig" not in (getattr(text_config, "auto_map", None) or {}):
        return
    backbone = type(language_model)
    text_config.auto_map = {
        **text_config.auto_map,
        "AutoModel": f"{backbone.__module__.rsplit('.', 1)[-1]}.{backbone.__name__}",
    }
    os.makedirs(folder, exist_ok=True)
    for obj in dynamic:
        custom_object_save(obj, folder)  # the module file and the files it imports relatively


__all__ = [
    "CODE_SOURCE",
    "UnresolvedRemoteCodeConfig",
    "code_source",
    "needs_remote_code",
    "resolve_text_config",
    "save_llm_code",
]
