"""Stage two: heads that fit on feature arrays. A head never opens an image or a store.

Heads are imported on first use (the dense head loads Keras and TensorFlow), so that code
which only names them, or uses the scikit-learn ones, does not start TensorFlow.
"""

__distribution__ = "bottleneck-heads"  # pipeline/packages.py checks this line at start-up

import importlib
from collections.abc import Mapping

from heads._base import Head, HeadError, parse_params

_HOMES = {"dense": ("heads._dense", "DenseHead"), "logreg": ("heads._logreg", "LogRegHead"),
          "svm": ("heads._svm", "SVMHead"), "ensemble": ("heads._ensemble", "EnsembleHead"),
          "finetune": ("heads._finetune", "FinetuneHead")}


class _Registry(Mapping):
    """Head name -> head class, each class imported when it is first looked up."""

    def __getitem__(self, name: str) -> type[Head]:
        module, attribute = _HOMES[name]
        return getattr(importlib.import_module(module), attribute)

    def __iter__(self):
        return iter(_HOMES)

    def __len__(self) -> int:
        return len(_HOMES)


HEADS: Mapping[str, type[Head]] = _Registry()
# Heads that take VGG16's block4_pool maps (n, h, w, 512) and train block 5 on them; the others
# take any features (pooled, or maps they flatten).
MAPS_HEADS = frozenset({"finetune"})


def head_class(name: str) -> type[Head]:
    """The registered head class called ``name``; the error lists the valid names."""
    if name not in HEADS:
        raise HeadError(f"Unknown head {name!r}; choose from {', '.join(HEADS)}.")
    return HEADS[name]


def create_head(name: str, **params) -> Head:
    return head_class(name)(**params)


def __getattr__(name: str):
    for head, (module, attribute) in _HOMES.items():
        if attribute == name:
            return HEADS[head]
    raise AttributeError(f"module 'heads' has no attribute {name!r}")


__all__ = ["HEADS", "MAPS_HEADS", "DenseHead", "EnsembleHead", "FinetuneHead", "Head", "HeadError", "LogRegHead", "SVMHead",
           "create_head", "head_class", "parse_params"]
