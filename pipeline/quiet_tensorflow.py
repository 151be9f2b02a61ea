"""TensorFlow imported on first use, with its C++ start-up lines muted.

TensorFlow prints start-up lines from C++ (CUDA probing, oneDNN notes) that ignore
``TF_CPP_MIN_LOG_LEVEL``. ``mute_tensorflow_startup`` installs an import hook that catches
the first ``import tensorflow``, wherever it comes from (Keras, a head, an engine), and runs
it with the process's stderr file descriptor pointed at /dev/null. Python errors still
surface. A command that never needs TensorFlow (an int8 store, the scikit-learn heads) never pays
for loading it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import os
import sys


class _AlreadyLoaded(importlib.abc.Loader):
    """Hands the import system a module that was imported already."""

    def __init__(self, module):
        self.module = module

    def create_module(self, spec):
        return self.module

    def exec_module(self, module) -> None:
        pass


class _MutedTensorFlowImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # one import, then out of the way
        module = _import_muted(name)
        spec = module.__spec__
        spec.loader = _AlreadyLoaded(module)
        return spec


def _import_muted(name: str):
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            return importlib.import_module(name)
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def mute_tensorflow_startup() -> None:
    """Mute TensorFlow's start-up lines whenever it is first imported (once per process)."""
    if "tensorflow" in sys.modules or any(isinstance(f, _MutedTensorFlowImport) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _MutedTensorFlowImport())
