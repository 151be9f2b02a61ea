"""Heads on plain arrays: fit, save, load, predict, and their parameter handling."""

import numpy as np
import pytest

from heads import HEADS, MAPS_HEADS, DenseHead, HeadError, LogRegHead, SVMHead, create_head, parse_params
from heads._training import holdout_split

# Fewer epochs for the dense head (it also refits), the ensemble with its two quick members;
# tests/test_ensemble.py votes with the dense head too.
QUICK = {"dense": {"epochs": 5, "patience": 2}, "ensemble": {"members": "logreg,svm"}}

POOLED_HEADS = sorted(set(HEADS) - MAPS_HEADS)  # tests/test_finetune.py: the head on maps


def blobs(n_per_class=60, n_features=32, n_classes=3, seed=0, shape=None):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(n_classes, n_features))
    y = np.repeat(np.arange(n_classes), n_per_class)
    X = (centres[y] + rng.normal(size=(len(y), n_features))).astype(np.float32)
    return (X.reshape(len(y), *shape) if shape else X), y


@pytest.mark.parametrize("name", POOLED_HEADS)
def test_head_fits_saves_loads_and_predicts_identically(name, tmp_path):
    X, y = blobs()
    X_new, y_new = blobs(seed=0, n_per_class=20)
    head = create_head(name, **QUICK.get(name, {})).fit(X, y)
    proba = head.predict_proba(X_new)
    assert proba.shape == (60, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert (head.predict(X_new) == y_new).mean() > 0.9
    head.save(tmp_path / name)
    reloaded = type(head).load(tmp_path / name)
    np.testing.assert_array_equal(reloaded.predict_proba(X_new), proba)
    np.testing.assert_array_equal(reloaded.classes_, head.classes_)


@pytest.mark.parametrize("name", POOLED_HEADS)
def test_head_accepts_unpooled_feature_maps(name):
    X, y = blobs(shape=(2, 2, 8))
    head = create_head(name, **QUICK.get(name, {})).fit(X, y)
    assert head.predict_proba(X).shape == (180, 3)
    with pytest.raises(HeadError, match="fitted on features of shape"):
        head.predict_proba(X.reshape(180, -1))


def test_svm_chooses_its_solver_by_training_rows():
    X, y = blobs(n_per_class=50)
    assert SVMHead().fit(X, y).solver_ == "one-vs-rest SVC(kernel='rbf')"
    assert SVMHead(rbf_max_samples=100).fit(X, y).solver_ == "LinearSVC(dual=False)"


def test_params_are_typed_from_defaults():
    assert parse_params(LogRegHead, ["C=0.5", "max_iter=50"]) == {"C": 0.5, "max_iter": 50}
    assert parse_params(SVMHead, ["solver=linear"]) == {"solver": "linear"}
    assert parse_params(LogRegHead, ["columns=block4_avg+block5_avg"]) == {"columns": "block4_avg+block5_avg"}


@pytest.mark.parametrize("pairs, message", [
    (["gamma=1"], "Unknown parameter 'gamma' for head 'logreg'; it takes C, class_weight, column_groups, columns, cv_folds"),
    (["search_space=1"], "cannot be set with `param`"),
    (["C"], "`param` takes name=value"),
    (["C=high"], "'C' must be a float"),
])
def test_bad_params_name_the_problem(pairs, message):
    with pytest.raises(HeadError, match=message):
        parse_params(LogRegHead, pairs)


def test_unknown_head_lists_the_names():
    with pytest.raises(HeadError, match="choose from dense, logreg, svm"):
        create_head("forest")


def test_unfitted_head_and_single_class_are_refused():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError, match="not fitted"):
        LogRegHead().predict_proba(np.zeros((2, 4)))
    with pytest.raises(HeadError, match="at least two classes"):
        LogRegHead().fit(np.zeros((4, 4)), np.zeros(4))


def test_balanced_accuracy_is_the_mean_recall_of_the_classes_present():
    from sklearn.metrics import balanced_accuracy_score

    from heads._base import balanced_accuracy
    rng = np.random.default_rng(0)
    labels, predicted = rng.integers(0, 4, 50), rng.integers(0, 4, 50)
    assert balanced_accuracy(labels, predicted) == pytest.approx(balanced_accuracy_score(labels, predicted))
    # a class predicted that the rows lack (a fold without it) is no class of the mean
    assert balanced_accuracy([0, 0, 0, 1], [0, 0, 2, 1]) == pytest.approx((2 / 3 + 1) / 2)


@pytest.mark.parametrize("name, params", [
    ("logreg", {"class_weight": "none", "search_space": {"C": [1e-6, 1e-4]}, "n_jobs": 1}),
    ("svm", {"search_space": {"C": [1.0]}, "n_jobs": 1}),
    ("dense", {"class_weight": "none", "networks": 1}),
    ("ensemble", {"member_params": {"logreg": {"class_weight": "none", "n_jobs": 1}, "svm": {"n_jobs": 1},
                                    "dense": {"class_weight": "none", "networks": 1, "epochs": 20}}}),
])
def test_a_head_blind_to_a_rare_class_scores_chance_not_the_common_classs_share(name, params):
    """Nine rows in ten of one class and features without signal: a head that calls every row the
    common class is 90% accurate; the score compare chooses by puts it at chance."""
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(120, 16)).astype(np.float32), np.repeat([0, 1], [108, 12])
    head = create_head(name, **params).fit(X, y)
    assert head.cv_score_ < 0.7


def test_search_picks_by_grouped_cross_validation():
    from sklearn.model_selection import GroupKFold, cross_val_score

    from heads._sklearn import true_class_log_loss
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 40)).astype(np.float32)
    y = (X[:, :3].sum(axis=1) + rng.normal(scale=1.5, size=120) > 0).astype(int)
    groups = np.arange(120) // 2
    head = LogRegHead(search_space={"C": [1e-3, 0.1, 10.0]}, n_jobs=1).fit(X, y, groups=groups)

    def fold_mean(C, scoring):
        return cross_val_score(LogRegHead()._make_estimator(120, C=C), X, y, groups=groups, cv=GroupKFold(3),
                               scoring=scoring).mean()
    log_loss = {C: fold_mean(C, true_class_log_loss) for C in (1e-3, 0.1, 10.0)}
    best = max(log_loss, key=log_loss.get)  # logreg's C by log loss; its cv_score_ the balanced accuracy there
    assert best != 1e-3  # the strongest regularisation: timid probabilities, however accurate
    assert head.best_params_ == {"C": best} and head.cv_score_ == pytest.approx(fold_mean(best, "balanced_accuracy"))
    assert head.model_[-1].C == best
    svm = SVMHead(search_space={"C": [0.5, 2.0], "kernel": ["linear", "rbf"]}, n_jobs=1).fit(X, y)
    assert set(svm.best_params_) == {"C", "kernel"}
    assert svm.solver_ == f"one-vs-rest SVC(kernel={svm.best_params_['kernel']!r})"


def test_the_log_loss_scorer_scores_a_fold_holding_a_class_its_model_never_saw():
    from sklearn.linear_model import LogisticRegression

    from heads._sklearn import true_class_log_loss
    X, y = blobs(n_per_class=20)
    model = LogisticRegression().fit(X[y != 2], y[y != 2])
    score = true_class_log_loss(model, X, y)
    seen = np.log(model.predict_proba(X[y != 2])[np.arange(np.sum(y != 2)), y[y != 2]])
    assert score == pytest.approx((seen.sum() + np.sum(y == 2) * np.log(1e-15)) / len(y))


def test_augmented_twins_never_straddle_a_search_fold(monkeypatch):
    """A fold that validates on a twin of a training row would score a memorised copy."""
    from sklearn.model_selection import GroupKFold
    seen = []
    original = GroupKFold.split

    def recording_split(self, X, y=None, groups=None):
        for train, test in original(self, X, y, groups):
            seen.append(set(groups[train]) & set(groups[test]))
            yield train, test

    monkeypatch.setattr(GroupKFold, "split", recording_split)
    X, y = blobs(n_per_class=30)
    groups = np.arange(len(y)) % 45  # each source appears twice, as an augmented pass would
    LogRegHead(search_space={"C": [0.1, 1.0]}, n_jobs=1).fit(X, y, groups=groups)
    assert seen and all(not overlap for overlap in seen)


def test_dense_head_trains_from_memory_mapped_shards_without_loading_them(tmp_path):
    """Rows come from .npy shard files a batch at a time; loading them whole would raise."""
    from features.store import ShardedFeatures

    class NeverLoaded(ShardedFeatures):
        def __array__(self, dtype=None, copy=None):
            raise AssertionError("the dense head loaded every feature row at once")

    X, y = blobs(n_per_class=100)
    parts = []
    for number, start in enumerate(range(0, len(X), 70)):  # shards of unequal length
        np.save(tmp_path / f"shard-{number}.npy", X[start:start + 70])
        parts.append(np.load(tmp_path / f"shard-{number}.npy", mmap_mode="r"))
    from_shards = create_head("dense", epochs=5, networks=1).fit(NeverLoaded(parts), y)
    from_array = create_head("dense", epochs=5, networks=1).fit(X, y)
    np.testing.assert_allclose(from_shards.predict_proba(X), from_array.predict_proba(X), atol=1e-6)
    assert (from_shards.predict(X) == y).mean() > 0.9
    np.testing.assert_array_equal(ShardedFeatures(parts)[np.array([250, 3, 140, 69, 70])],
                                  X[[250, 3, 140, 69, 70]])


def test_an_epoch_gathered_in_chunks_trains_as_one_gathered_whole(monkeypatch):
    """A store larger than CHUNK_BYTES is gathered a few whole batches at a time: the same batches
    in the same order, so the head is the one a single gather trains."""
    import heads._training as training
    X, y = blobs(n_per_class=40)
    params = {"epochs": 4, "patience": 1, "networks": 1, "batch_size": 16}
    whole = DenseHead(**params).fit(X, y)
    monkeypatch.setattr(training, "CHUNK_BYTES", 3 * 16 * 4 * X.shape[1])  # three batches of 16 rows
    chunked = DenseHead(**params).fit(X, y)
    assert chunked.epochs_ == whole.epochs_
    np.testing.assert_allclose(chunked.predict_proba(X), whole.predict_proba(X), atol=1e-6)


def test_early_stopping_keeps_the_weights_of_the_lowest_holdout_loss():
    """On labels that are noise the holdout loss soon rises: training stops ``patience`` epochs
    after its lowest and the weights kept are that epoch's."""
    import keras
    from heads._training import EpochTrainer

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(200, 16)).astype(np.float32), rng.integers(0, 3, 200)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")

    class CountingTrainer(EpochTrainer):
        epochs_run = 0

        def epoch(self, rows):
            self.epochs_run += 1
            return super().epoch(rows)

    trainer = CountingTrainer(model, X, y, batch_size=16, seed=0)
    fit_rows, stop_rows = np.arange(150), np.arange(150, 200)
    epochs, loss, accuracy = trainer.early_stopped(fit_rows, stop_rows, epochs=50, patience=3)
    assert trainer.epochs_run == epochs + 3 < 50
    assert trainer.score(stop_rows) == pytest.approx((loss, accuracy), rel=1e-5)
    assert trainer.served == set(fit_rows.tolist())  # never a holdout row


def test_large_search_runs_on_whole_groups_and_the_linear_svm_tries_linear_C():
    from heads._sklearn import search_sample
    groups = np.arange(3000) // 3  # 1,000 images, three passes each
    rows = search_sample(groups, 600)
    assert 500 <= len(rows) <= 700 and np.array_equal(rows, search_sample(groups, 600))
    assert all(np.sum(groups[rows] == g) == 3 for g in np.unique(groups[rows]))  # never a partial image
    assert len(search_sample(groups[:500], 600)) == 500

    X, y = blobs(n_per_class=100)
    svm = SVMHead(rbf_max_samples=100, search_max_samples=150, n_jobs=1,
                  search_space={"C": [5.0, 50.0], "linear_C": [0.01, 0.1]}).fit(X, y)
    assert svm.solver_ == "LinearSVC(dual=False)" and svm.best_params_["C"] in (0.01, 0.1)
    assert (svm.predict(X) == y).mean() > 0.9


def test_dense_refit_trains_a_fresh_network_on_every_training_row():
    """Early stopping picks the epochs on a grouped holdout; the kept network then trains on all rows."""
    X, y = blobs(n_per_class=30, n_features=16)
    groups = np.arange(len(y)) // 2
    held = DenseHead(epochs=6, patience=2, refit=False, networks=1).fit(X, y, groups=groups)
    fit_rows, stop_rows = holdout_split(np.unique(y, return_inverse=True)[1], groups, held.holdout, held.seed)
    assert not held.refitted_ and held.rows_seen_ == len(fit_rows) < len(y)  # the holdout never trained
    refitted = DenseHead(epochs=6, patience=2, networks=1).fit(X, y, groups=groups)
    assert refitted.refitted_ and refitted.epochs_ == held.epochs_
    assert refitted.rows_seen_ == len(y)  # every training row, counted as the training drew them
    # its input scaling comes from every row, not from the rows left after the holdout
    centre = np.asarray(refitted.model_.layers[1].mean).ravel()
    np.testing.assert_allclose(centre, (X.min(axis=0) + X.max(axis=0)) / 2, rtol=1e-5, atol=1e-5)
    assert (refitted.predict(X) == y).mean() > 0.9


def test_dense_networks_train_apart_and_their_probabilities_are_averaged(tmp_path):
    """Three networks, each seeded apart with epochs of its own; the saved model, in plain Keras,
    gives their mean probabilities, and each is the network a one-network head of its seed keeps."""
    import keras
    X, y = blobs(n_per_class=30, n_features=16)
    groups = np.arange(len(y)) // 2
    head = DenseHead(networks=3, epochs=8, patience=2).fit(X, y, groups=groups)
    networks = [layer for layer in head.model_.layers if isinstance(layer, keras.Sequential)]
    each = np.stack([np.asarray(network(X, training=False)) for network in networks])
    assert len(each) == len(head.epochs_) == 3
    assert min(np.abs(each[0] - other).max() for other in each[1:]) > 1e-3  # not one network thrice
    np.testing.assert_allclose(each.mean(axis=0), head.predict_proba(X), atol=1e-6)
    alone = DenseHead(networks=1, epochs=8, patience=2, seed=2).fit(X, y, groups=groups)
    assert alone.epochs_ == head.epochs_[2:]
    np.testing.assert_allclose(alone.predict_proba(X), each[2], atol=1e-5)
    head.save(tmp_path / "dense")
    plain = keras.saving.load_model(tmp_path / "dense" / "model.keras", safe_mode=True)
    np.testing.assert_allclose(plain.predict(X, verbose=0), head.predict_proba(X), atol=1e-6)
    assert DenseHead.load(tmp_path / "dense").networks == 3


def test_sqrt_l2_normalisation_is_the_default_and_can_be_searched():
    from heads._sklearn import signed_sqrt_l2
    rows = np.array([[4.0, -9.0, 0.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(signed_sqrt_l2(rows), [[2 / 13 ** 0.5, -3 / 13 ** 0.5, 0], [0, 0, 0]])
    X, y = blobs(n_per_class=40)
    X = np.abs(X)  # VGG16 features are non-negative
    for head_class in (LogRegHead, SVMHead):
        head = head_class(search_space={"C": [1.0], "normalize": ["none", "sqrt_l2"]}, n_jobs=1).fit(X, y)
        assert head.best_params_["normalize"] in ("none", "sqrt_l2")
        assert head.normalization_ == head.best_params_["normalize"]
        searched = head.model_.named_steps
        assert (searched["standardscaler"] == "passthrough") == (head.normalization_ == "sqrt_l2")
        fixed = head_class(n_jobs=1).fit(X, y)
        assert fixed.normalization_ == "sqrt_l2"  # both heads' default
        steps = fixed.model_.named_steps  # balanced rows, scaled to a unit mean square, not standardised after
        np.testing.assert_allclose(steps["normalize"].transform(X), signed_sqrt_l2(X) * X.shape[1] ** 0.5, rtol=1e-6)
        assert steps["minmaxscaler"] == steps["standardscaler"] == "passthrough"
        assert (fixed.predict(X) == y).mean() > 0.9


@pytest.mark.parametrize("head_class, params", [(LogRegHead, {"n_jobs": 1}),
                                                (DenseHead, {"networks": 1, "epochs": 30, "patience": 5})])
def test_logreg_and_dense_weigh_each_class_alike_by_default_so_a_rare_class_is_still_found(head_class, params):
    def pooled_like(y):  # non-negative, each class lighting its own channels
        X = np.abs(rng.normal(size=(len(y), 40)))
        X[y == 1, :10] += 0.4
        X[y == 0, 10:20] += 0.4
        return X.astype(np.float32)

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], [300, 12])  # a dozen photos of one class beside hundreds of the other
    X, new = pooled_like(y), pooled_like(np.ones(200, int))
    recall = {weights: float(np.mean(head_class(class_weight=weights, **params).fit(X, y).predict(new) == 1))
              for weights in ("balanced", "none")}
    assert head_class().class_weight == "balanced"
    assert recall["balanced"] > recall["none"] + 0.3
    assert parse_params(head_class, ["class_weight=none"]) == {"class_weight": "none"}


def test_balanced_weights_leave_classes_of_one_size_as_the_plain_one_vs_rest_svm():
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.svm import SVC

    from heads._svm import WeightedOneVsRest
    X, y = blobs(n_per_class=20)
    plain = OneVsRestClassifier(SVC()).fit(X, y).decision_function(X)
    np.testing.assert_allclose(WeightedOneVsRest(SVC(), class_weight="balanced").fit(X, y).decision_function(X), plain,
                               atol=1e-10)
    rare = np.concatenate([np.flatnonzero(y != 2), np.flatnonzero(y == 2)[:4]])  # one class of 4 beside 20s
    weighted = WeightedOneVsRest(SVC(), class_weight="balanced").fit(X[rare], y[rare]).decision_function(X)
    assert not np.allclose(weighted, OneVsRestClassifier(SVC()).fit(X[rare], y[rare]).decision_function(X))


def test_the_svm_weighs_each_class_alike_by_default_so_a_rare_class_is_still_found():
    def pooled_like(y):  # non-negative, each class lighting its own channels
        X = np.abs(rng.normal(size=(len(y), 60)))
        for label in range(3):
            X[y == label, 10 * label:10 * label + 10] += 0.6
        return X.astype(np.float32)

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [150, 150, 10])  # ten photos of one class beside hundreds of two others
    X, new = pooled_like(y), pooled_like(np.full(200, 2))
    recall = {weights: float(np.mean(SVMHead(class_weight=weights, n_jobs=1).fit(X, y).predict(new) == 2))
              for weights in ("balanced", "none")}
    assert SVMHead().class_weight == "balanced"
    assert recall["balanced"] > recall["none"] + 0.3


@pytest.mark.parametrize("calibration", ["sigmoid", "temperature"])
def test_svm_calibration_folds_keep_an_images_rows_together(calibration):
    X, y = blobs(n_per_class=30)
    groups = np.arange(len(y)) // 3  # three rows per source image
    head = SVMHead(calibration=calibration, n_jobs=1).fit(X, y, groups=groups)
    folds = head.model_[-1].cv
    assert len(folds) == 3 and head.calibration_ == f"{calibration}, 3-fold"
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])
    proba = head.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert (proba.argmax(axis=1) == y).mean() > 0.9


def test_each_head_declares_its_search_space_and_the_svm_owns_its_linear_c():
    from heads import HEADS

    assert HEADS["logreg"].default_search_space == {"C": [0.001, 0.01, 0.1, 1.0, 10.0, 100.0]}
    assert HEADS["dense"].search_space_without({}) == {}
    svm = HEADS["svm"]
    assert {"C", "linear_C", "kernel"} == set(svm.default_search_space)
    assert set(svm.search_space_without({"C": 1.0})) == {"kernel"}  # C given: neither solver's C searched
    assert set(HEADS["ensemble"].search_space_without({})) == {"logreg", "svm"}


@pytest.mark.parametrize("kernel", ["rbf", "linear"])
def test_the_svm_search_on_a_precomputed_kernel_decides_as_the_kernel_svc(kernel):
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.svm import SVC

    from heads._svm import KernelRows
    X, y = blobs(n_per_class=20, n_classes=4)
    X_new, _ = blobs(n_per_class=5, n_classes=4, seed=1)
    direct = OneVsRestClassifier(SVC(C=2.0, kernel=kernel)).fit(X, y)
    rows = KernelRows(kernel).fit(X)
    precomputed = OneVsRestClassifier(SVC(C=2.0, kernel="precomputed")).fit(rows.transform(X), y)
    np.testing.assert_allclose(precomputed.decision_function(rows.transform(X_new)), direct.decision_function(X_new),
                               atol=1e-8)
    head = SVMHead(search_space={"C": [0.5, 2.0], "kernel": ["linear", "rbf"]}, n_jobs=1).fit(X, y)
    assert head.best_params_["kernel"] in ("linear", "rbf") and "precomputed" not in head.solver_


def test_the_svm_calibrates_on_a_precomputed_kernel_as_on_the_kernel_svc_and_saves(tmp_path):
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.svm import SVC

    from heads._calibration import TemperatureCalibration
    from heads._sklearn import grouped_folds
    from heads._svm import precomputed_twin
    X, y = blobs(n_per_class=20, n_classes=4)
    svm = OneVsRestClassifier(SVC(C=2.0, kernel="rbf"))
    folds = grouped_folds(y, None, 3)
    plain = TemperatureCalibration(svm, cv=folds).fit(X, y)
    twin = TemperatureCalibration(svm, cv=folds, fold_estimator=precomputed_twin(svm)).fit(X, y)
    assert twin.beta_ == pytest.approx(plain.beta_, rel=1e-4)  # the same scores to 1e-14; the optimiser to 1e-5
    np.testing.assert_allclose(twin.predict_proba(X), plain.predict_proba(X), atol=1e-5)
    assert isinstance(twin.estimators_[0], OneVsRestClassifier)  # the kept model is the plain SVM
    head = SVMHead(C=2.0, n_jobs=1).fit(X, y)
    assert "temperature" in head.calibration_
    head.save(tmp_path / "svm")  # the twin among its parameters is a trusted type
    np.testing.assert_array_equal(type(head).load(tmp_path / "svm").predict_proba(X), head.predict_proba(X))
