"""Stage two: heads that fit on feature arrays. A head never opens an image or a store."""

from heads._base import Head, HeadError, parse_params
from heads._dense import DenseHead
from heads._ensemble import EnsembleHead
from heads._logreg import LogRegHead
from heads._svm import SVMHead

HEADS: dict[str, type[Head]] = {"dense": DenseHead, "logreg": LogRegHead, "svm": SVMHead,
                                 "ensemble": EnsembleHead}


def head_class(name: str) -> type[Head]:
    """The registered head class called ``name``; the error lists the valid names."""
    if name not in HEADS:
        raise HeadError(f"Unknown head {name!r}; choose from {', '.join(HEADS)}.")
    return HEADS[name]


def create_head(name: str, **params) -> Head:
    return head_class(name)(**params)


__all__ = ["HEADS", "DenseHead", "EnsembleHead", "Head", "HeadError", "LogRegHead", "SVMHead",
           "create_head", "head_class", "parse_params"]
