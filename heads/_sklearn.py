"""Shared fitting, searching and saving for heads that wrap a scikit-learn estimator."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import numpy as np
import skops.io
from joblib.parallel import BACKENDS, DEFAULT_BACKEND, get_active_backend
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.model_selection import GridSearchCV, GroupKFold, StratifiedGroupKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler, normalize
from threadpoolctl import threadpool_limits

from heads._base import (Head, HeadError, Interval, Options, balanced_accuracy, check_columns, check_training_data,
                         selected_ranges)

MODEL_FILE = "model.skops"
LEGACY_FILE = "model.joblib"  # a pickle, as earlier versions saved heads: never opened
# What a saved head may hold beyond the types skops.io trusts itself (scikit-learn's public
# estimators, numpy arrays, builtins): anything else in the file refuses it unopened.
TRUSTED_TYPES = ("heads._logreg.LogRegHead", "heads._svm.SVMHead", "heads._sklearn.ColumnGroups",
                 "sklearn.calibration._CalibratedClassifier", "sklearn.calibration._SigmoidCalibration",
                 "sklearn.calibration._TemperatureScaling", "heads._calibration.TemperatureCalibration",
                 "heads._svm.KernelRows", "heads._svm.WeightedOneVsRest")

# Rules shared by the scikit-learn heads' ``_parameter_constraints``.
POSITIVE_FLOAT = [Interval(float, 0, None, closed="neither")]  # finite: nan and inf refused
N_JOBS = [Options(-1), Interval(int, 1)]
SEARCH_SPACE = [None, dict]
NORMALIZATIONS = ("none", "sqrt_l2")
NORMALIZE = [Options(*NORMALIZATIONS)]
COLUMN_GROUPS = [None, dict]  # group name -> [start, stop) of its feature columns
COLUMNS = [None, str]  # "+"-joined names of the groups used; None: every column
INPUT_PARAMS = ("normalize", "columns")  # searched in the pipeline's first step, named ``normalize``
SCALING_STEPS = ("minmaxscaler", "standardscaler")  # the pipeline's steps between it and the estimator
# A fit of fewer feature values runs in this process, on one BLAS thread as joblib's workers do:
# starting the workers costs seconds that a small search never wins back. bench/fit_workers.py on a
# 2-core AVX2 EPYC (logreg's search and fit, 2,560 columns, 4 classes): 200 rows 1.3 s in process
# against 4.0 s on workers, 800 rows 2.5 s against 5.0 s, 2,400 rows 12.3 s against 9.8 s; on two
# BLAS threads in process the same 200 rows took 9.3 s (docs/benchmarks.md).
IN_PROCESS_VALUES = 1_000_000


def fit_workers(n_jobs: int, values: int) -> int:
    """The joblib workers a fit of ``values`` feature values uses: 1 (this process) when it has
    fewer than ``IN_PROCESS_VALUES`` and joblib runs on its default local processes (not, say, a
    Dask cluster the caller configured), else ``n_jobs``."""
    on_local_processes = isinstance(get_active_backend()[0], BACKENDS[DEFAULT_BACKEND])
    return 1 if values < IN_PROCESS_VALUES and on_local_processes else n_jobs


def signed_sqrt_l2(X: np.ndarray) -> np.ndarray:
    """Signed square root of each feature, then each row scaled to unit L2 norm (a zero row stays
    zero): the power normalisation of Perronnin et al., which damps a few dominant channels."""
    return normalize(np.sign(X) * np.sqrt(np.abs(X)), norm="l2")


class ColumnGroups(TransformerMixin, BaseEstimator):
    """The heads' first step: the ``columns`` chosen of ``groups`` (name -> [start, stop); None:
    every column, one group) side by side, each group normalised by ``normalize`` (``sqrt_l2``:
    ``signed_sqrt_l2`` per group, so each group weighs the same) or left as it is (``none``).

    Before normalising, each column is clipped to its training range (``low_``, ``high_``): a value
    far outside it (a channel dead in training, lit at prediction) would otherwise dominate its
    group's norm and shrink every other feature of the row. After it, every row is scaled by
    ``scale_``, the square root of the columns per group, so a feature's mean square is 1 as after
    standardising: the heads' grids of C serve both normalisations."""

    def __init__(self, groups: dict | None = None, columns: str | None = None, normalize: str = "none"):
        self.groups = groups
        self.columns = columns
        self.normalize = normalize

    def fit(self, X, y=None) -> "ColumnGroups":
        X = np.asarray(X)
        self.low_, self.high_ = X.min(axis=0), X.max(axis=0)
        ranges = selected_ranges(self.groups, self.columns, X.shape[1])
        self.scale_ = float(np.sqrt(sum(stop - start for start, stop in ranges) / len(ranges)))
        return self

    def transform(self, X) -> np.ndarray:
        X = np.asarray(X)
        if self.normalize != "none" and hasattr(self, "low_"):  # heads saved before the clip have no range
            X = np.clip(X, self.low_, self.high_)
        parts = [X[:, start:stop] for start, stop in selected_ranges(self.groups, self.columns, X.shape[1])]
        if self.normalize == "sqrt_l2":  # heads saved before the scale standardise after this step
            parts = [signed_sqrt_l2(part) * getattr(self, "scale_", 1.0) for part in parts]
        return parts[0] if len(parts) == 1 else np.hstack(parts)


def input_grids(search_space: dict, grid: dict) -> tuple[list[dict], dict]:
    """(sklearn grids, sklearn name -> head name): ``grid`` with the searched ``INPUT_PARAMS``; a
    searched ``normalize`` splits it into one grid per normalisation, each with its scaling steps."""
    inputs = {f"normalize__{name}": list(search_space[name]) for name in INPUT_PARAMS if name in search_space}
    names = {key: key.partition("__")[2] for key in inputs}
    if "normalize__normalize" not in inputs:
        return [{**grid, **inputs}], names
    grids = []
    for choice in inputs["normalize__normalize"]:
        scaling = {name: [step] for name, step in zip(SCALING_STEPS, scaling_steps(choice))}
        grids.append({**grid, **inputs, "normalize__normalize": [choice], **scaling})
    return grids, names


def head_pipeline(head: Head, estimator, normalize: str | None = None, columns: str | None = None) -> Pipeline:
    """``ColumnGroups`` (named ``normalize``: the head's groups, its ``columns`` and ``normalize``
    unless given), the ``scaling_steps`` of that normalisation, then ``estimator``; later steps
    are named as ``make_pipeline`` would."""
    normalize = normalize or head.normalize
    first = ColumnGroups(head.column_groups, columns or head.columns, normalize)
    estimator_name = type(estimator).__name__.lower()
    return Pipeline([("normalize", first), *zip(SCALING_STEPS, scaling_steps(normalize)), (estimator_name, estimator)])


def grouped_folds(y: np.ndarray, groups: np.ndarray | None, folds: int, seed: int = 0) -> list:
    """``folds`` (train, test) splits that keep each group (source image) on one side and spread
    every class over the folds as evenly as groups allow."""
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y, groups))


def scaling_steps(normalize: str = "none") -> list:
    """The steps named ``SCALING_STEPS`` after ``ColumnGroups``: without normalisation, clip each
    feature to its training range, then standardise; after ``sqrt_l2``, none ("passthrough").

    Clipping (``MinMaxScaler(clip=True)``, an affine map that leaves the training rows' standardised
    values as they were) rather than a ``VarianceThreshold``: it also bounds near-constant features
    (a VGG16 channel non-zero on one training image, whose standard deviation is tiny) and keeps
    every column, so no feature far outside its training range can push the model to certainty.
    Standardising rows that ``sqrt_l2`` has balanced would blow those same near-constant channels
    back up: it cost logreg 2 points on dtd_6 in bench/normalization.py.
    """
    if normalize == "sqrt_l2":
        return ["passthrough", "passthrough"]
    return [MinMaxScaler(clip=True), StandardScaler()]


class SklearnHead(Head):
    """A head whose ``model_`` is a scikit-learn classifier on flattened features.

    With a ``search_space`` (head parameter name -> candidate values), ``fit`` first
    picks the candidates with the best cross-validated ``search_metric`` (``balanced_accuracy``:
    the mean recall per class, ``heads._base.balanced_accuracy``; ``log_loss``: the mean log
    probability of the true class; or ``accuracy``) on the training rows
    (``GroupKFold`` on ``groups``, so augmented twins of an image share a fold; joblib
    runs the fits on ``n_jobs`` workers of the backend the caller configured with
    ``joblib.parallel_config``: local processes by default, a Dask cluster under the
    CLI's ``--backend dask``; a small fit on local processes runs in this process instead,
    ``fit_workers``), then fits on all rows with them. The choice
    is kept as ``best_params_`` and their mean fold balanced accuracy as ``cv_score_``. Beyond
    ``search_max_samples`` training rows the search runs on whole groups drawn at random
    (seeded) up to that many rows: the best candidates rarely change with more rows, while
    the search's cost grows with them; the final fit always uses every row.

    With ``column_groups`` (group name -> [start, stop) of the columns, which a ``blocks`` store
    names), ``columns`` selects groups ("+"-joined names) and ``normalize`` applies per group;
    a search space may hold both, so the groups are chosen by the same grouped folds.

    A class with fewer images (groups) than ``cv_folds`` lowers the folds; one with a single
    image leaves no fold to validate it, so the search is skipped and ``fit`` uses the
    parameters as given. ``search_note_`` says why (None when the search ran as asked or
    none was asked for), so ``compare`` still ranks the head.
    """

    search_metric = "balanced_accuracy"  # what the search maximises: a name in SEARCH_SCORERS

    def _make_estimator(self, n_samples: int, **overrides):
        """The final pipeline, with ``overrides`` of head parameters; ``y=`` the training labels."""
        raise NotImplementedError

    def _search_grid(self, n_samples: int) -> tuple[object, list[dict], dict]:
        """(uncalibrated pipeline, sklearn param grid, sklearn name -> head name)."""
        raise NotImplementedError

    def fit(self, X, y, groups=None) -> "SklearnHead":
        self._validate_params()
        X, y = check_training_data(X, y)
        X = np.asarray(X, dtype=np.float32)
        self.feature_shape_ = X.shape[1:]
        X = X.reshape(len(X), -1)
        check_columns(self, X.shape[1])
        with self._small_fits_in_process(X):
            self.best_params_, self.cv_score_, self.search_note_ = (
                self._search(X, y, groups) if self.search_space else ({}, None, None))
            return self._fit_model(X, y, groups)

    def _small_fits_in_process(self, X: np.ndarray):
        """Set ``n_jobs_``, the workers this fit uses (``fit_workers``); where that is this
        process instead of ``n_jobs``, a context limiting it to one BLAS thread."""
        self.n_jobs_ = fit_workers(self.n_jobs, X.size)
        return threadpool_limits(1, user_api="blas") if self.n_jobs_ != self.n_jobs else nullcontext()

    def _fit_model(self, X: np.ndarray, y: np.ndarray, groups) -> "SklearnHead":
        """The final fit on flattened ``X`` with ``best_params_``."""
        self.model_ = self._make_estimator(len(X), **self.best_params_, y=y, groups=groups).fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def _fixed_params(self) -> dict:
        """Parameters for a copy that repeats this fitted head's choices without searching."""
        return {**self.get_params(), "search_space": None}

    def fit_like(self, X, y, groups=None) -> "SklearnHead":
        """A new head with this fitted head's parameters and searched choices, fitted on ``X``,
        ``y`` without a search (what the ensemble's cross-validation refits in each fold)."""
        self._check_fitted()
        head = type(self)(**self._fixed_params())
        head._validate_params()
        X, y = check_training_data(X, y)
        X = np.asarray(X, dtype=np.float32)
        head.feature_shape_ = X.shape[1:]
        head.best_params_, head.cv_score_, head.search_note_ = dict(self.best_params_), None, None
        X = X.reshape(len(X), -1)
        with head._small_fits_in_process(X):
            return head._fit_model(X, y, groups)

    @property
    def normalization_(self) -> str:
        """The input normalisation in use: the searched one, else the ``normalize`` parameter."""
        return self.best_params_.get("normalize", getattr(self, "normalize", "none"))

    @property
    def columns_(self) -> str | None:
        """The column groups in use ("+"-joined): the searched ones, else the ``columns`` parameter."""
        return self.best_params_.get("columns", getattr(self, "columns", None))

    def _search(self, X, y, groups) -> tuple[dict, float | None, str | None]:
        """(best head parameters, their mean fold balanced accuracy, note) or ({}, None, why it was skipped)."""
        n_samples = len(y)
        groups = np.arange(n_samples) if groups is None else np.asarray(groups)
        rows = search_sample(groups, self.search_max_samples)
        X, y, groups = X[rows], y[rows], groups[rows]
        label, images = smallest_class(y, groups)
        folds = min(self.cv_folds, len(np.unique(groups)), images)
        why = f"class {label!r} has {images} training image{'s' if images > 1 else ''}"
        if folds < 2:
            return {}, None, f"search skipped: {why}"
        estimator, grid, names = self._search_grid(n_samples)  # the solver the final fit will use
        scoring = {name: SEARCH_SCORERS[name] for name in ("balanced_accuracy", self.search_metric)}
        search = GridSearchCV(estimator, grid, cv=GroupKFold(n_splits=folds), scoring=scoring,
                              n_jobs=self.n_jobs_, refit=False)
        search.fit(X, y, groups=groups)
        scores = search.cv_results_[f"mean_test_{self.search_metric}"]
        ranked = np.where(np.isnan(scores), -np.inf, scores)
        index = int(np.argmax(ranked))  # the first of equals, as GridSearchCV's own best_index_
        if not np.isfinite(ranked[index]):  # a fold without some class failed to fit
            return {}, None, f"search skipped: its {folds}-fold fits failed ({why})"
        params = search.cv_results_["params"][index]
        best = {names[key]: value for key, value in params.items() if key in names}
        note = f"search used {folds} folds, not {self.cv_folds}: {why}" if folds < self.cv_folds else None
        return best, float(search.cv_results_["mean_test_balanced_accuracy"][index]), note

    def predict_proba(self, X) -> np.ndarray:
        """Shape (n_samples, n_classes), columns in ``classes_`` order."""
        X = self._check_features(X)
        return self.model_.predict_proba(X.reshape(len(X), -1))

    def save(self, folder: Path) -> None:
        """``folder/model.skops``: the fitted head as data (``skops.io``), no pickle."""
        self._check_fitted()
        Path(folder).mkdir(parents=True, exist_ok=True)
        skops.io.dump(self, Path(folder) / MODEL_FILE)

    @classmethod
    def load(cls, folder: Path) -> "SklearnHead":
        """The head in ``folder/model.skops``, read as data; a file naming any type beyond
        ``TRUSTED_TYPES`` (which could run code) or an old pickle is refused unopened."""
        path = Path(folder) / MODEL_FILE
        if not path.is_file() and (Path(folder) / LEGACY_FILE).is_file():
            raise HeadError(f"{Path(folder) / LEGACY_FILE} is a pickle from an older version, which is never "
                            f"opened (loading a pickle can run any code in it). Fit the head again with "
                            f"`head --head {cls.name}`.")
        data = path.read_bytes()
        try:
            untrusted = sorted(set(skops.io.get_untrusted_types(data=data)) - set(TRUSTED_TYPES))
            if untrusted:
                raise HeadError(f"{path} names types a head never holds ({', '.join(untrusted[:3])}); it "
                                f"is not opened. Fit the head again with `head --head {cls.name}`.")
            head = skops.io.loads(data, trusted=list(TRUSTED_TYPES))
        except HeadError:
            raise
        except Exception as error:  # skops refuses a damaged or foreign file in many ways
            raise HeadError(f"{path} is not a saved {cls.name} head ({type(error).__name__}). Fit the head "
                            f"again with `head --head {cls.name}`.") from None
        if type(head) is not cls:
            raise HeadError(f"{path} holds a {type(head).__name__}, not a {cls.name} head. Fit the head again "
                            f"with `head --head {cls.name}`.")
        return head


def balanced_accuracy_score(estimator, X, y) -> float:
    """A scorer: ``balanced_accuracy`` of ``estimator``'s predictions on ``X``."""
    return balanced_accuracy(y, estimator.predict(X))


def true_class_log_loss(estimator, X, y) -> float:
    """A scorer: the mean log of the probability ``estimator`` gives each row's true class (a class
    its fold never trained on counts as 1e-15), so every fold scores, whatever classes it holds."""
    proba = estimator.predict_proba(X)
    classes = estimator.classes_
    column = np.clip(np.searchsorted(classes, y), 0, len(classes) - 1)
    known = classes[column] == y
    true_proba = np.where(known, proba[np.arange(len(y)), column], 0.0)
    return float(np.mean(np.log(np.clip(true_proba, 1e-15, 1.0))))


SEARCH_SCORERS = {"balanced_accuracy": balanced_accuracy_score, "log_loss": true_class_log_loss,
                  "accuracy": "accuracy"}


def smallest_class(y: np.ndarray, groups: np.ndarray | None = None) -> tuple[object, int]:
    """(label, count) of the class with the fewest distinct groups (rows when ``groups`` is None)."""
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    labels, label_index = np.unique(y, return_inverse=True)
    pairs = np.unique(np.stack([label_index, np.unique(groups, return_inverse=True)[1]]), axis=1)
    counts = np.bincount(pairs[0])
    return labels[[np.argmin(counts)]].tolist()[0], int(counts.min())  # a plain int or str


def search_sample(groups: np.ndarray, max_samples: int, seed: int = 0) -> np.ndarray:
    """Indices of all rows, or of whole groups drawn at random up to about ``max_samples`` rows."""
    if len(groups) <= max_samples:
        return np.arange(len(groups))
    unique = np.random.default_rng(seed).permutation(np.unique(groups))
    chosen = unique[:max(2, len(unique) * max_samples // len(groups))]
    return np.flatnonzero(np.isin(groups, chosen))

