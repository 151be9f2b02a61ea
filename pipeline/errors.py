"""The error type of orchestration: a store, run or export that cannot be used as asked."""


class PipelineError(Exception):
    """A request the pipeline cannot carry out, stated with the fix."""
