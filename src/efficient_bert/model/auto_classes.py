"""Mosaic BERT in transformers' Auto classes, registered when transformers loads them.

``import efficient_bert`` is enough for ``AutoConfig.from_pretrained(<export>)`` and
``AutoModelForMaskedLM.from_pretrained(<export>)`` to find our model. Registering at import time
would import torch and transformers with every ``efficient-bert --help``, so :func:`install`
registers at once only what transformers has already loaded, and otherwise right after it loads:
the config when ``configuration_auto`` has run, the models when ``modeling_auto`` has. By then every
transformers module our code imports has finished loading.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from typing import Any, Callable, Optional, Sequence

CONFIG_AUTO = "transformers.models.auto.configuration_auto"
MODELING_AUTO = "transformers.models.auto.modeling_auto"


def register_config() -> None:
    from transformers import AutoConfig

    from efficient_bert.model.mosaic_bert.configuration import MosaicBertConfig

    AutoConfig.register(MosaicBertConfig.model_type, MosaicBertConfig, exist_ok=True)


def register_models() -> None:
    from transformers import AutoModel, AutoModelForMaskedLM, AutoModelForSequenceClassification

    from efficient_bert.model.mosaic_bert.configuration import MosaicBertConfig
    from efficient_bert.model.mosaic_bert.modeling import (MosaicBertForMaskedLM,
                                                           MosaicBertForSequenceClassification, MosaicBertModel)

    AutoModel.register(MosaicBertConfig, MosaicBertModel, exist_ok=True)
    AutoModelForMaskedLM.register(MosaicBertConfig, MosaicBertForMaskedLM, exist_ok=True)
    AutoModelForSequenceClassification.register(MosaicBertConfig, MosaicBertForSequenceClassification, exist_ok=True)


def register_auto_classes() -> None:
    """Register the config and the models now (imports torch and transformers)."""
    register_config()
    register_models()


class _RunAfter(importlib.abc.Loader):
    """A module's own loader, then ``action`` once the module's code has run."""

    def __init__(self, loader: importlib.abc.Loader, action: Callable[[], None]):
        self.loader, self.action = loader, action

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self.loader.exec_module(module)
        self.action()

    def __getattr__(self, name: str) -> Any:  # get_source, is_package, ...: the real loader's
        return getattr(self.loader, name)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: for the modules in ``actions`` it asks the other finders, then wraps the
    loader so that the module's action runs after it loads. Leaves ``sys.meta_path`` when done."""

    def __init__(self, actions: dict[str, Callable[[], None]]):
        self.actions = actions

    def find_spec(self, name: str, path: Optional[Sequence[str]], target: Any = None
                  ) -> Optional[importlib.machinery.ModuleSpec]:
        action = self.actions.pop(name, None)
        if action is None:
            return None
        if not self.actions and self in sys.meta_path:
            sys.meta_path.remove(self)
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _RunAfter(spec.loader, action)
                return spec
        return None


def install() -> None:
    """Register now what transformers has loaded, and the rest when it loads."""
    pending = {}
    for module, action in ((CONFIG_AUTO, register_config), (MODELING_AUTO, register_models)):
        if module in sys.modules:
            action()
        else:
            pending[module] = action
    if pending and not any(isinstance(f, _AfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport(pending))
