"""The only package that knows both stages: CLI, configuration, cache keys, orchestration."""

__distribution__ = "bottleneck-heads"  # pipeline/packages.py checks this line at start-up

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # keep TensorFlow's start-up chatter quiet
