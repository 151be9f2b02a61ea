"""Support vector machine on normalised features."""

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.metrics.pairwise import linear_kernel, rbf_kernel
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import LabelBinarizer
from sklearn.svm import SVC, LinearSVC
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.parallel import Parallel, delayed

from heads._base import Flag, Interval, Options
from heads._calibration import TemperatureCalibration
from heads._sklearn import (COLUMN_GROUPS, COLUMNS, N_JOBS, NORMALIZE, POSITIVE_FLOAT, SEARCH_SPACE, SklearnHead,
                            grouped_folds, head_pipeline, input_grids, smallest_class)

SOLVERS = ("auto", "rbf", "linear")
CALIBRATIONS = ("auto", "sigmoid", "isotonic", "temperature")
CALIBRATION_FOLDS = 3


class SVMHead(SklearnHead):
    """Features normalised per column group (``normalize="sqrt_l2"``, the default: signed square
    root, then L2; ``none``: clipped to their training range and standardised), then an SVM with
    class probabilities.

    ``solver="auto"`` picks a kernel ``SVC`` (RBF unless a search chooses linear; with
    ``one_vs_rest``, one per class against the rest, whose scores calibrate far better than
    SVC's own one-vs-one votes: on monkeys_10 log loss 0.04 against 0.17-0.24) up to
    ``rbf_max_samples`` training rows (its cost grows about quadratically in rows) and
    a ``LinearSVC`` beyond, solved in the primal (linear in rows; with far more rows than
    features the dual solver took 8-14x longer here at C >= 0.1). Either is given
    probabilities by ``calibration`` (``temperature``: one softmax temperature over the SVM's
    one-vs-rest scores, fitted by log loss against Platt's smoothed targets, so a set whose held-out
    rows are all right stays short of certainty (``heads._calibration.TemperatureCalibration``);
    ``sigmoid``: Platt scaling per class, then
    renormalised; ``isotonic``; ``auto``: temperature for more than two classes, where it gave
    the best log loss and ECE on monkeys_10 (bench/accuracy.py), sigmoid for two, where they
    tie) fitted on 3 folds (``CalibratedClassifierCV`` but for the temperature) grouped
    by source image (``groups``: augmented twins never straddle a calibration fold): the
    kernel SVC is then refitted on every row (one model), while the linear one keeps the
    three fold models, fitted in parallel, and averages them, which saves a fit on every
    row. The choice made is kept as ``solver_``. A search space may hold ``C``,
    ``normalize``, ``columns`` (of ``column_groups``, as for logreg) and, for the kernel SVC, ``kernel`` (``rbf``, ``linear``); ``linear_C``,
    when present, replaces ``C`` for the LinearSVC. The kernel SVC's search runs on a precomputed
    kernel (``KernelRows``), computed once a fold for every class rather than once per class.

    ``class_weight`` (``balanced``, the default; ``none``; or class -> weight) weighs each row's
    loss by its class: the one-vs-rest SVC gives a row the same weight in every class's problem
    (``WeightedOneVsRest``), the others take scikit-learn's ``class_weight`` (per-class C).
    ``balanced`` weighs every row 1 where the classes are the same size. On two classes Platt's
    sigmoid, fitted on the rows as they are, sets the threshold between them again, which undoes
    much of the weighing.

    A class with fewer than 3 training images lowers the calibration folds to its count; a class
    of one image leaves nothing to hold out, so the SVM is then fitted on every row and Platt
    scaling (whatever ``calibration`` says) on its own training scores (in-sample, so
    optimistic, but Platt's smoothed targets keep it short of certainty), rather than
    refusing: ``compare`` still ranks the head. ``calibration_`` records which.
    """

    name = "svm"
    # The kernel SVC tries both kernels only up to its rbf_max_samples rows; beyond, LinearSVC
    # tries linear_C: smaller values, since a large C scored worse on the 50,000 x 512 benchmark
    # store and costs the primal solver many iterations (per fit on 6,700 x 512: 4 s at C=0.1,
    # 15 s at C=1, 34 s at C=10). normalize is sqrt_l2, not searched: searched against none, none
    # won 2 of 50 folds of bench/svm_search.py (three sets, every photo and 20 a class), each time
    # worse, and won exact ties (the first in grid order) on dtd_6's training rows: 0.825 on
    # validation against 0.892 with sqrt_l2. class_weight balanced by default, as logreg's and the
    # dense head's: in bench/class_weight.py, with every other class cut to 8 photos in the training
    # folds, the held-out accuracy rose 7.1 points on dtd_6 and 4.8 on monkeys_10 (0 on the two-class
    # cats_and_dogs_filtered); with 20, 0.2, 0.2 and 1.5; with no class cut, 0.0, 0.0 and 0.1.
    default_search_space = {"C": [0.1, 1.0, 10.0], "kernel": ["rbf", "linear"], "linear_C": [0.001, 0.01, 0.1]}
    _parameter_constraints = {
        "C": POSITIVE_FLOAT,
        "normalize": NORMALIZE,
        "column_groups": COLUMN_GROUPS,
        "columns": COLUMNS,
        "calibration": [Options(*CALIBRATIONS)],
        "one_vs_rest": [Flag()],
        "class_weight": [Options("none", "balanced"), dict],
        "solver": [Options(*SOLVERS)],
        "rbf_max_samples": [Interval(int, 1)],
        "search_space": SEARCH_SPACE,
        "cv_folds": [Interval(int, 2)],
        "search_max_samples": [Interval(int, 2)],
        "n_jobs": N_JOBS,
        "seed": [Interval(int, 0)],
    }

    @classmethod
    def search_space_without(cls, given: dict) -> dict:
        """As for every head, and ``linear_C`` (the linear solver's C) counts as ``C``: a C given
        explicitly is not searched by either solver."""
        return {name: values for name, values in super().search_space_without(given).items()
                if name.removeprefix("linear_") not in given}

    def __init__(self, *, C: float = 1.0, normalize: str = "sqrt_l2", column_groups: dict | None = None,
                 columns: str | None = None, calibration: str = "auto", one_vs_rest: bool = True,
                 class_weight: str | dict = "balanced",
                 solver: str = "auto", rbf_max_samples: int = 10000, search_space: dict | None = None,
                 cv_folds: int = 3, search_max_samples: int = 10000, n_jobs: int = -1, seed: int = 0):
        self.C = C
        self.normalize = normalize
        self.column_groups = column_groups
        self.columns = columns
        self.calibration = calibration
        self.one_vs_rest = one_vs_rest
        self.class_weight = class_weight
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
        C = self.C if C is None else C
        class_weight = None if self.class_weight == "none" else self.class_weight
        if self.solver_ == "rbf":
            if not self.one_vs_rest:
                self.solver_ = f"SVC(kernel={kernel!r})"
                return SVC(C=C, kernel=kernel, class_weight=class_weight, random_state=self.seed)
            self.solver_ = f"one-vs-rest SVC(kernel={kernel!r})"
            return WeightedOneVsRest(SVC(C=C, kernel=kernel, random_state=self.seed), class_weight=class_weight)
        self.solver_ = "LinearSVC(dual=False)"
        return LinearSVC(C=C, dual=False, tol=1e-3, class_weight=class_weight, random_state=self.seed)

    def _make_estimator(self, n_samples: int, C: float | None = None, kernel: str = "rbf",
                        normalize: str | None = None, columns: str | None = None, y=None, groups=None):
        """``y`` and ``groups``, the training labels and source images, set the calibration
        folds (grouped; fewer for a class with few images)."""
        svm = self._svm(n_samples, C, kernel)
        folds, ensemble, method = CALIBRATION_FOLDS, isinstance(svm, LinearSVC), self.calibration
        if method == "auto":  # measured: see the class docstring
            method = "temperature" if y is not None and len(np.unique(y)) > 2 else "sigmoid"
        self.calibration_ = f"{method}, {folds}-fold"
        if y is not None:
            label, count = smallest_class(y, groups)
            unit = "row" if groups is None else "image"
            why = f"class {label!r} has {count} training {unit}{'s' if count > 1 else ''}"
            if count < folds:
                folds = count
                self.calibration_ = f"{method}, {count}-fold: {why}"
            if count < 2:
                every = np.arange(n_samples)
                folds, ensemble, method = [(every, every)], True, "sigmoid"  # one model, on its own rows
                self.calibration_ = f"sigmoid, in-sample: {why}"
            else:
                folds = grouped_folds(y, groups, folds, self.seed)
        if method == "temperature":
            twin = None if ensemble else precomputed_twin(svm)  # kept fold models stay plain SVMs
            calibrated = TemperatureCalibration(svm, cv=folds, ensemble=ensemble, n_jobs=self.n_jobs_,
                                                fold_estimator=twin)
        else:
            calibrated = CalibratedClassifierCV(svm, method=method, cv=folds, ensemble=ensemble, n_jobs=self.n_jobs_)
        return head_pipeline(self, calibrated, normalize, columns)

    def _search_grid(self, n_samples: int):
        """The kernel SVC is searched on a precomputed kernel (``KernelRows``): the same fits, but
        a one-vs-rest SVC computes each fold's kernel once rather than once per class."""
        linear = self._choose_solver(n_samples) == "linear"
        svm = self._svm(n_samples, kernel="precomputed") if not linear else self._svm(n_samples)
        step = type(svm).__name__.lower() + ("__estimator" if isinstance(svm, OneVsRestClassifier) else "")
        candidates = self.search_space.get("linear_C" if linear else "C")
        grid = {f"{step}__C": list(candidates or self.search_space.get("C", [self.C]))}
        names = {f"{step}__C": "C"}
        if not linear and "kernel" in self.search_space:
            grid["kernelrows__kernel"] = list(self.search_space["kernel"])
            names["kernelrows__kernel"] = "kernel"
        grids, input_names = input_grids(self.search_space, grid)
        pipeline = head_pipeline(self, svm)
        if not linear:
            pipeline = Pipeline([*pipeline.steps[:-1], ("kernelrows", KernelRows()), pipeline.steps[-1]])
        return pipeline, grids, {**names, **input_names}

    def _fixed_params(self) -> dict:
        """Also the solver it chose, so a copy fitted on fewer rows keeps the same kind of SVM."""
        return {**super()._fixed_params(), "solver": "linear" if self.solver_.startswith("LinearSVC") else "rbf"}


def precomputed_twin(svm):
    """A one-vs-rest kernel SVC as the same SVC on its ``KernelRows`` (the kernel computed once for
    every class: the same decisions, faster); None for any other SVM."""
    if not (isinstance(svm, OneVsRestClassifier) and svm.estimator.kernel in ("rbf", "linear")):
        return None
    kernel = svm.estimator.kernel
    return Pipeline([("kernelrows", KernelRows(kernel)),
                     ("svm", clone(svm).set_params(estimator__kernel="precomputed"))])


class WeightedOneVsRest(OneVsRestClassifier):
    """``OneVsRestClassifier`` whose binary estimators weigh each row by its class's ``class_weight``
    (``balanced``: rows over classes times the class's rows, scikit-learn's; a dict: class -> weight;
    None: every row 1), the same weight in every class's problem, whether the row is the class or
    among the rest: a rare class counts as much as a common one in each. Where the classes are the
    same size, ``balanced`` weighs every row 1, the plain one-vs-rest."""

    def __init__(self, estimator, *, class_weight=None, n_jobs=None, verbose=0):
        super().__init__(estimator, n_jobs=n_jobs, verbose=verbose)
        self.class_weight = class_weight

    def fit(self, X, y) -> "WeightedOneVsRest":
        weights = compute_sample_weight(self.class_weight, y)
        self.label_binarizer_ = LabelBinarizer()
        problems = self.label_binarizer_.fit_transform(y).T  # one row per class; one for two classes
        self.classes_ = self.label_binarizer_.classes_
        self.estimators_ = Parallel(n_jobs=self.n_jobs, verbose=self.verbose)(
            delayed(clone(self.estimator).fit)(X, problem, sample_weight=weights) for problem in problems)
        self.n_features_in_ = self.estimators_[0].n_features_in_
        return self


class KernelRows(TransformerMixin, BaseEstimator):
    """Each row as its ``kernel`` values (``rbf``, with ``SVC``'s ``gamma="scale"``, or ``linear``)
    against the rows it was fitted on: the input of ``SVC(kernel="precomputed")``, whose decisions
    then match ``SVC(kernel=kernel)`` on the rows themselves (to 1e-14 here). Shared by every class
    of a one-vs-rest SVC, the kernel is computed once: 15x faster on 100 classes of 14 rows."""

    def __init__(self, kernel: str = "rbf"):
        self.kernel = kernel

    def fit(self, X, y=None) -> "KernelRows":
        self.rows_ = np.asarray(X, dtype=np.float64)
        variance = self.rows_.var()
        self.gamma_ = 1.0 / (self.rows_.shape[1] * variance) if variance != 0 else 1.0
        return self

    def transform(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if self.kernel == "linear":
            return linear_kernel(X, self.rows_)
        return rbf_kernel(X, self.rows_, gamma=self.gamma_)
