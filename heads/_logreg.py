"""Logistic regression on standardised features."""

from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from heads._sklearn import SklearnHead


class LogRegHead(SklearnHead):
    """``StandardScaler`` then multinomial ``LogisticRegression`` (lbfgs).

    Parameters
    ----------
    C : float, inverse regularisation strength.
    max_iter : int, lbfgs iterations at most.
    """

    name = "logreg"

    def __init__(self, *, C: float = 1.0, max_iter: int = 2000):
        self.C = C
        self.max_iter = max_iter

    def _make_estimator(self, n_samples: int):
        return make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=self.max_iter))
