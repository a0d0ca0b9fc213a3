"""A small registry: architectures are created by name, never through if/elif chains.

Our own architectures (``models.backbones``, ``models.landmark_nets``) register themselves when their
module is imported, which :func:`list_models` and :func:`create_model` do first: importing ``models``
alone does not import PyTorch (the service imports it while it reads its saved index, ``app.main``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import torch.nn as nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
BUILT_IN = ("models.backbones", "models.landmark_nets")  # the modules that register our architectures


def _import_built_in() -> None:
    for module in BUILT_IN:
        importlib.import_module(module)


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that registers a model factory under ``name``."""

    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return wrap


def list_models() -> list[str]:
    """Names of every registered architecture, sorted."""
    _import_built_in()
    return sorted(_REGISTRY)


def create_model(name: str, **kwargs) -> nn.Module:
    """Build the architecture registered as ``name`` with the given keyword arguments.

    Raises:
        KeyError: when ``name`` is not registered; the message lists the valid names.
    """
    _import_built_in()
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; choose one of {list_models()}") from None
    return factory(**kwargs)
