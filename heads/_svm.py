"""Support vector machine on standardised features."""

from sklearn.calibration import CalibratedClassifierCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC

from heads._base import HeadError
from heads._sklearn import SklearnHead

SOLVERS = ("auto", "rbf", "linear")


class SVMHead(SklearnHead):
    """``StandardScaler`` then an SVM with class probabilities.

    ``solver="auto"`` picks an RBF ``SVC`` up to ``rbf_max_samples`` training rows
    (its cost grows about quadratically in rows) and a ``LinearSVC`` beyond (linear
    in rows). Either is given probabilities by Platt scaling fitted with 3-fold
    ``CalibratedClassifierCV``. The choice made is kept as ``solver_``.
    """

    name = "svm"

    def __init__(self, *, C: float = 1.0, solver: str = "auto", rbf_max_samples: int = 10000,
                 seed: int = 0):
        self.C = C
        self.solver = solver
        self.rbf_max_samples = rbf_max_samples
        self.seed = seed

    def _make_estimator(self, n_samples: int):
        if self.solver not in SOLVERS:
            raise HeadError(f"svm solver must be one of {', '.join(SOLVERS)}. Received: {self.solver!r}")
        self.solver_ = self.solver
        if self.solver == "auto":
            self.solver_ = "rbf" if n_samples <= self.rbf_max_samples else "linear"
        if self.solver_ == "rbf":
            svm = SVC(C=self.C, kernel="rbf", random_state=self.seed)
        else:
            svm = LinearSVC(C=self.C, random_state=self.seed)
        calibrated = CalibratedClassifierCV(svm, method="sigmoid", cv=3, ensemble=False)
        return make_pipeline(StandardScaler(), calibrated)
