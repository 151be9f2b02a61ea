"""The one exception stage one raises for problems a user can fix."""


class FeatureError(Exception):
    """A problem with the data, the weights or the store, stated with its fix."""
