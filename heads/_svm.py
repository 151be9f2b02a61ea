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

    ``solver="auto"`` picks a kernel ``SVC`` (RBF unless a search chooses linear) up to
    ``rbf_max_samples`` training rows (its cost grows about quadratically in rows) and
    a ``LinearSVC`` beyond, solved in the primal (linear in rows; with far more rows than
    features the dual solver took 8-14x longer here at C >= 0.1). Either is given
    probabilities by Platt scaling fitted with 3-fold ``CalibratedClassifierCV``: the
    kernel SVC is then refitted on every row (one model), while the linear one keeps the
    three fold models, fitted in parallel, and averages them, which saves a fit on every
    row. The choice made is kept as ``solver_``. A search space may hold ``C`` and, for
    the kernel SVC, ``kernel`` (``rbf``, ``linear``); ``linear_C``, when present, replaces
    ``C`` for the LinearSVC.
    """

    name = "svm"

    def __init__(self, *, C: float = 1.0, solver: str = "auto", rbf_max_samples: int = 10000,
                 search_space: dict | None = None, cv_folds: int = 3, search_max_samples: int = 10000,
                 n_jobs: int = -1, seed: int = 0):
        self.C = C
        self.solver = solver
        self.rbf_max_samples = rbf_max_samples
        self.search_space = search_space
        self.cv_folds = cv_folds
        self.search_max_samples = search_max_samples
        self.n_jobs = n_jobs
        self.seed = seed

    def _choose_solver(self, n_samples: int) -> str:
        if self.solver not in SOLVERS:
            raise HeadError(f"svm solver must be one of {', '.join(SOLVERS)}. Received: {self.solver!r}")
        if self.solver == "auto":
            return "rbf" if n_samples <= self.rbf_max_samples else "linear"
        return self.solver

    def _svm(self, n_samples: int, C: float | None = None, kernel: str = "rbf"):
        self.solver_ = self._choose_solver(n_samples)
        if self.solver_ == "rbf":
            self.solver_ = f"SVC(kernel={kernel!r})"
            return SVC(C=self.C if C is None else C, kernel=kernel, random_state=self.seed)
        self.solver_ = "LinearSVC(dual=False)"
        return LinearSVC(C=self.C if C is None else C, dual=False, tol=1e-3, random_state=self.seed)

    def _make_estimator(self, n_samples: int, C: float | None = None, kernel: str = "rbf"):
        svm = self._svm(n_samples, C, kernel)
        calibrated = CalibratedClassifierCV(svm, method="sigmoid", cv=3, ensemble=isinstance(svm, LinearSVC),
                                            n_jobs=self.n_jobs)
        return make_pipeline(StandardScaler(), calibrated)

    def _search_grid(self, n_samples: int):
        svm = self._svm(n_samples)
        step = type(svm).__name__.lower()
        candidates = self.search_space.get("linear_C" if step == "linearsvc" else "C")
        grid = {f"{step}__C": list(candidates or self.search_space.get("C", [self.C]))}
        names = {f"{step}__C": "C"}
        if step == "svc" and "kernel" in self.search_space:
            grid[f"{step}__kernel"] = list(self.search_space["kernel"])
            names[f"{step}__kernel"] = "kernel"
        return make_pipeline(StandardScaler(), svm), [grid], names
