"""Detector registry: a name resolves to its class, so nothing needs to import every detector.

Each detector class registers itself on definition (``BaseDetector.__init_subclass__`` with its
``name``); the built-in detectors are imported on first lookup from ``BUILTIN`` (module paths, as
xarray resolves its backends), so ``base.py`` imports none of its subclasses and state persistence
(``alerts.detectors.state_io``) finds state types through here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from alerts.errors import AlertsError

if TYPE_CHECKING:  # pragma: no cover
    from alerts.detectors.base import BaseDetector

BUILTIN: dict[str, str] = {
    "mowing": "alerts.detectors.mowing",
    "harvest": "alerts.detectors.harvest",
    "solar": "alerts.detectors.solar",
}
_REGISTRY: dict[str, type[BaseDetector]] = {}


def register(name: str, cls: type[BaseDetector]) -> None:
    other = _REGISTRY.get(name)
    if other is not None and other is not cls and other.__qualname__ != cls.__qualname__:
        raise AlertsError(
            f"detector name {name!r} registered twice ({other.__qualname__}, {cls.__qualname__})"
        )
    _REGISTRY[name] = cls


def _load_builtin() -> None:
    for module in BUILTIN.values():
        importlib.import_module(module)


def names() -> list[str]:
    _load_builtin()
    return [n for n in BUILTIN if n in _REGISTRY] + [n for n in _REGISTRY if n not in BUILTIN]


def detector_class(name: str) -> type[BaseDetector]:
    if name not in _REGISTRY and name in BUILTIN:
        importlib.import_module(BUILTIN[name])
    cls = _REGISTRY.get(name)
    if cls is None:
        raise AlertsError(f"unknown detector {name!r}; choose from {', '.join(names())}")
    return cls


def make_detector(name: str, params: Any = None) -> BaseDetector:
    return detector_class(name)(params)


def state_class(type_name: str) -> type:
    """The state dataclass named ``type_name`` (e.g. ``"MowingState"``) of a registered detector."""
    _load_builtin()
    for cls in _REGISTRY.values():
        if cls.state_type.__name__ == type_name:
            return cls.state_type
    raise KeyError(type_name)
