"""The one exception stage one raises for problems a user can fix."""


class FeatureError(ValueError):
    """A problem with the data, the weights or the store, stated with its fix (a ``ValueError``,
    as scikit-learn raises for bad arguments)."""
