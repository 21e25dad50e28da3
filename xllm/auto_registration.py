"""Registering X-LLM's classes with transformers' Auto classes, without making `import xllm` slow.

`import xllm` must register the config, model and processor classes, so that
`AutoModelForMultimodalLM.from_pretrained(folder)` works on saved X-LLM folders. Defining those classes
imports torch and transformers, which takes seconds, and the command line (`xllm --help`) must not wait
for that. So `import xllm` installs a one-shot import finder instead, and registration happens just
before the first import that needs it:

* before the first module of the package outside `LIGHT_MODULES` starts executing (everything that
  imports torch or transformers is outside): that module may itself be one that registration needs,
  and registering first means no module is ever caught half-initialized;
* or once transformers itself has been imported, when user code reaches for the Auto classes before
  touching any such module;
* at once, when transformers is already imported at `import xllm`.

Python has no post-import hook; this finder is the smallest one: it finds nothing itself (a module that
registration has just imported is handed back as it is) and removes itself on first use.
"""

import importlib.abc
import importlib.util
import sys

# Modules of the package that import neither torch nor transformers (tests/test_cli_speed.py checks it):
# importing them registers nothing. Every other `xllm.*` module registers first.
LIGHT_MODULES = frozenset(
    {
        "xllm.auto_registration",
        "xllm.cli",
        "xllm.__main__",
        "xllm.commands",
        "xllm.evaluation",
        "xllm.evaluation.benchmarks",
        "xllm.evaluation.benchmarks.annotation_files",
        "xllm.evaluation.benchmarks.annotation_tables",
        "xllm.evaluation.benchmarks.audio",
        "xllm.evaluation.benchmarks.benchmark",
        "xllm.evaluation.benchmarks.discrn",
        "xllm.evaluation.benchmarks.images",
        "xllm.evaluation.benchmarks.point_clouds",
        "xllm.evaluation.benchmarks.published",
        "xllm.evaluation.benchmarks.speech",
        "xllm.evaluation.benchmarks.videos",
        "xllm.evaluation.caption_tokenizer",
        "xllm.evaluation.decoding",
        "xllm.evaluation.metric_loading",
        "xllm.evaluation.prompts",
        "xllm.evaluation.tasks",
        "xllm.lazy_exports",
        "xllm.manifests",
        "xllm.modeling_xllm",
        "xllm.modeling_xllm.model_modalities",
        "xllm.processing",
        "xllm.processing.processor_modalities",
        "xllm.serving",
        "xllm.serving.limits",
    }
)
LIGHT_PACKAGES = ("xllm.commands.",)  # every command module imports its heavy parts inside `run`


def register_auto_classes() -> None:
    """Register config, interface config, model and processor classes with the Auto classes and for remote
    code (`register_for_auto_class`), and the model card writer."""
    from transformers import (
        AutoConfig,
        AutoModel,
        AutoModelForImageTextToText,
        AutoModelForMultimodalLM,
        AutoProcessor,
        AutoVideoProcessor,
    )

    from xllm.model_card import write_model_card
    from xllm.modeling_xllm.configuration_xllm import XLLMConfig, XLLMInterfaceConfig
    from xllm.modeling_xllm.modeling_xllm import XLLMForConditionalGeneration, XLLMModel, XLLMPreTrainedModel
    from xllm.processing.processing_xllm import XLLMProcessor
    from xllm.processing.video_processing_xllm import XLLMVideoProcessor

    AutoConfig.register("xllm", XLLMConfig, exist_ok=True)
    AutoConfig.register("xllm_interface", XLLMInterfaceConfig, exist_ok=True)
    AutoModel.register(XLLMConfig, XLLMModel, exist_ok=True)
    AutoModelForMultimodalLM.register(XLLMConfig, XLLMForConditionalGeneration, exist_ok=True)
    AutoModelForImageTextToText.register(XLLMConfig, XLLMForConditionalGeneration, exist_ok=True)
    AutoProcessor.register(XLLMConfig, XLLMProcessor, exist_ok=True)
    AutoVideoProcessor.register(XLLMConfig, XLLMVideoProcessor, exist_ok=True)
    # transformers' convention for code outside transformers: `save_pretrained` and `push_to_hub` of these
    # classes copy the files that define them into the folder and write `auto_map`, so that the folder loads
    # with `trust_remote_code=True` where `xllm` is not installed.
    XLLMConfig.register_for_auto_class()
    XLLMModel.register_for_auto_class("AutoModel")
    XLLMForConditionalGeneration.register_for_auto_class("AutoModelForMultimodalLM")
    XLLMProcessor.register_for_auto_class()
    XLLMVideoProcessor.register_for_auto_class("AutoVideoProcessor")
    # The model files cannot import the card module: they also run as remote code, where `xllm` is absent.
    XLLMPreTrainedModel.model_card_writer = staticmethod(write_model_card)


def needs_registration_first(name: str) -> bool:
    return name.startswith("xllm.") and name not in LIGHT_MODULES and not name.startswith(LIGHT_PACKAGES)


class AlreadyImported(importlib.abc.Loader):
    """Hands back a module that registration imported while the import system was looking for it.

    The import system then loads the module's own `__spec__` (not the spec a finder returns), so the
    module carries this loader's spec for that one load, and gets its own back afterwards."""

    def __init__(self, module):
        self.module = module
        self.own_spec = module.__spec__

    def create_module(self, spec):
        return self.module

    def exec_module(self, module) -> None:
        module.__spec__ = self.own_spec


class RegisterBeforeFirstUse(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname == "transformers":
            sys.meta_path.remove(self)
            return transformers_spec_then_register()
        if not needs_registration_first(fullname):
            return None
        sys.meta_path.remove(self)
        register_auto_classes()
        module = sys.modules.get(fullname)
        if module is None:
            return None  # the normal finders import it
        spec = importlib.util.spec_from_loader(
            fullname, AlreadyImported(module), origin=module.__spec__.origin
        )
        spec.submodule_search_locations = module.__spec__.submodule_search_locations
        module.__spec__ = spec
        return spec


def transformers_spec_then_register():
    """transformers' own spec, whose loader registers X-LLM once transformers has executed."""
    spec = importlib.util.find_spec("transformers")
    if spec is None or spec.loader is None:
        return spec
    exec_module = spec.loader.exec_module

    def exec_then_register(module) -> None:
        exec_module(module)
        register_auto_classes()

    spec.loader.exec_module = exec_then_register
    return spec


def register_before_first_use() -> None:
    """What `import xllm` does: register now if transformers is loaded, else install the finder."""
    if "transformers" in sys.modules:
        register_auto_classes()
    elif not any(isinstance(finder, RegisterBeforeFirstUse) for finder in sys.meta_path):
        sys.meta_path.insert(0, RegisterBeforeFirstUse())


__all__ = ["LIGHT_MODULES", "register_auto_classes", "register_before_first_use"]
