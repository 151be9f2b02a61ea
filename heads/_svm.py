"""Support vector machine on standardised features."""

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.pipeline import make_pipeline
from sklearn.svm import SVC, LinearSVC

from heads._base import Interval, Options
from heads._sklearn import N_JOBS, POSITIVE_FLOAT, SEARCH_SPACE, SklearnHead, scaling_steps

SOLVERS = ("auto", "rbf", "linear")
CALIBRATION_FOLDS = 3


class SVMHead(SklearnHead):
    """Features clipped to their training range and standardised, then an SVM with class
    probabilities.

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

    A class with fewer than 3 training rows lowers the calibration folds to its count; a class
    of one row leaves nothing to hold out, so the SVM is then fitted on every row and Platt
    scaling on its own training scores (in-sample, so optimistic, but Platt's smoothed targets
    keep it short of certainty), rather than refusing: ``compare`` still ranks the head.
    ``calibration_`` records which.
    """

    name = "svm"
    _parameter_constraints = {
        "C": POSITIVE_FLOAT,
        "solver": [Options(*SOLVERS)],
        "rbf_max_samples": [Interval(int, 1)],
        "search_space": SEARCH_SPACE,
        "cv_folds": [Interval(int, 2)],
        "search_max_samples": [Interval(int, 2)],
        "n_jobs": N_JOBS,
        "seed": [Interval(int, 0)],
    }

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

    def _make_estimator(self, n_samples: int, C: float | None = None, kernel: str = "rbf", y=None):
        """``y``, the training labels, lowers the calibration folds for a class with few rows."""
        svm = self._svm(n_samples, C, kernel)
        folds, ensemble = CALIBRATION_FOLDS, isinstance(svm, LinearSVC)
        self.calibration_ = f"sigmoid, {folds}-fold"
        if y is not None:
            labels, counts = np.unique(y, return_counts=True)
            label, rows = labels[np.argmin(counts)].item(), int(counts.min())
            if rows < folds:
                why = f"class {label!r} has {rows} training row{'s' if rows > 1 else ''}"
                folds = rows
                self.calibration_ = f"sigmoid, {rows}-fold: {why}"
            if rows < 2:
                every = np.arange(n_samples)
                folds, ensemble = [(every, every)], True  # one model, calibrated on its own rows
                self.calibration_ = f"sigmoid, in-sample: {why}"
        calibrated = CalibratedClassifierCV(svm, method="sigmoid", cv=folds, ensemble=ensemble,
                                            n_jobs=self.n_jobs)
        return make_pipeline(*scaling_steps(), calibrated)

    def _search_grid(self, n_samples: int):
        svm = self._svm(n_samples)
        step = type(svm).__name__.lower()
        candidates = self.search_space.get("linear_C" if step == "linearsvc" else "C")
        grid = {f"{step}__C": list(candidates or self.search_space.get("C", [self.C]))}
        names = {f"{step}__C": "C"}
        if step == "svc" and "kernel" in self.search_space:
            grid[f"{step}__kernel"] = list(self.search_space["kernel"])
            names[f"{step}__kernel"] = "kernel"
        return make_pipeline(*scaling_steps(), svm), [grid], names
