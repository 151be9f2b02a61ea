"""The Python API as a notebook uses it: load_store, the VGG16 transformer in a Pipeline."""

import numpy as np
import pytest
from PIL import Image
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, cross_val_score
from sklearn.pipeline import make_pipeline

from features import FeatureError, FeatureStore, VGG16Features, load_store
from tests.conftest import extract_args, write_images


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A finished fp32 avgmax store (random weights, 32 px) of three classes of patterned photos."""
    from tests.conftest import make_cli

    folder = tmp_path_factory.mktemp("api")
    data = folder / "photos"
    write_images(data, {"alpha": 12, "beta": 12, "gamma": 12})
    cli = make_cli(folder)
    # avgmax: the transformer's default (a plain estimator gets no column-group search), not the CLI's
    result = cli(*extract_args(data, cli.cache, "--precision", "fp32", "--passes", "1", "--pooling", "avgmax"))
    assert result.exit_code == 0, result.output
    return data, cli.cache


def test_load_store_round_trip(store):
    data, cache = store
    train = load_store("latest", split="train", cache=cache)
    validation = load_store("latest", split="validation", cache=cache)
    assert train.target_names == ["alpha", "beta", "gamma"]
    assert len(train.data) == len(train.target) == len(train.filenames) == len(train.pass_index)
    assert set(train.pass_index) == {0, 1} and set(validation.pass_index) == {0}
    stored = FeatureStore(cache / train.key).split_arrays("train")
    np.testing.assert_array_equal(np.asarray(train.data), stored["features"])
    for name, label in zip(train.filenames, train.target):
        assert name.split("/")[0] == train.target_names[label]
    by_key = load_store(train.key, split="validation", cache=cache)
    np.testing.assert_array_equal(np.asarray(by_key.data), np.asarray(validation.data))
    model = LogisticRegression(max_iter=2000).fit(train.data, train.target)
    assert model.score(validation.data, validation.target) > 0.6
    scores = cross_val_score(LogisticRegression(max_iter=2000), train.data, train.target,
                             groups=train.groups, cv=GroupKFold(3))
    assert len(scores) == 3
    with pytest.raises(FeatureError, match="No feature store"):
        load_store("latest", cache=cache / "nowhere")


def test_transformer_in_a_pipeline_with_logistic_regression(store):
    data, _ = store
    paths = sorted(str(p) for p in data.rglob("*.*"))
    labels = [p.split("/")[-2] for p in paths]
    features = VGG16Features(image_size=32, weights="none", precision="fp32")
    model = make_pipeline(features, LogisticRegression(max_iter=2000))
    model.fit(paths[::2], labels[::2])
    assert np.mean(model.predict(paths[1::2]) == np.asarray(labels[1::2])) > 0.6
    assert clone(features).get_params() == features.get_params()
    arrays = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths[:4]])
    from_arrays = VGG16Features(image_size=32, weights="none", precision="fp32").fit().transform(arrays)
    from_paths = VGG16Features(image_size=32, weights="none", precision="fp32").fit().transform(paths[:4])
    assert from_arrays.shape == (4, 1024)  # the default avgmax pooling
    np.testing.assert_allclose(from_arrays, from_paths, rtol=1e-4, atol=1e-4)


def test_transformer_reads_known_files_from_the_store(store):
    data, cache = store
    paths = sorted(str(p) for p in data.rglob("*.*"))[:6]
    computed = VGG16Features(image_size=32, weights="none", precision="fp32").fit().transform(paths)
    cached = VGG16Features(image_size=32, weights="none", precision="fp32", cache=str(cache)).fit()
    np.testing.assert_allclose(cached.transform(paths), computed, rtol=1e-5, atol=1e-5)
    assert getattr(cached, "engine_", None) is None, "every row came from the store"


def small_problem(classes: int = 3, per_class: int = 30, width: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (classes, width))
    y = np.repeat(np.arange(classes), per_class)
    return (centres[y] + rng.normal(0, 1, (len(y), width))).astype(np.float32), y


FAST_PARAMS = {"dense": {"epochs": 10, "patience": 2, "networks": 1}, "logreg": {}, "svm": {}, "ensemble": {"members": "logreg,svm"}}


@pytest.mark.parametrize("name", ["dense", "logreg", "svm", "ensemble"])
def test_heads_are_scikit_learn_classifiers(name):
    from sklearn.preprocessing import StandardScaler

    from heads import create_head

    head = create_head(name, **FAST_PARAMS[name])
    copy = clone(head)
    assert copy is not head and copy.get_params(deep=True) == head.get_params(deep=True)
    if "seed" in head.get_params():
        assert copy.set_params(seed=3).get_params()["seed"] == 3 and head.seed != 3
    X, y = small_problem()
    scores = cross_val_score(head, X, y, cv=3)
    assert len(scores) == 3 and scores.mean() > 0.8
    model = make_pipeline(StandardScaler(), clone(head)).fit(X, y)
    assert model.score(X, y) > 0.8 and model.predict_proba(X).shape == (len(y), 3)


def test_a_fitted_pipeline_pickles_and_predicts_the_same(store, tmp_path):
    import pickle

    import joblib

    from heads import LogRegHead

    data, _ = store
    paths = sorted(str(p) for p in data.rglob("*.*"))
    labels = [p.split("/")[-2] for p in paths]  # string labels
    model = make_pipeline(VGG16Features(image_size=32, weights="none", precision="fp32"), LogRegHead())
    expected = model.fit(paths[::2], labels[::2]).predict_proba(paths[1::2])
    assert model[0].engine_ is not None
    loaded = pickle.loads(pickle.dumps(model))
    assert getattr(loaded[0], "engine_", None) is None, "the engine is a cache, not pickled"
    np.testing.assert_allclose(loaded.predict_proba(paths[1::2]), expected, rtol=1e-5, atol=1e-6)
    joblib.dump(model, tmp_path / "model.joblib")
    assert list(joblib.load(tmp_path / "model.joblib").predict(paths[1::2])) == list(model.predict(paths[1::2]))
    assert set(loaded.classes_) == {"alpha", "beta", "gamma"}


def test_transformer_inputs_a_user_may_pass(store):
    data, _ = store
    path = sorted(str(p) for p in data.rglob("*.*"))[0]
    features = VGG16Features(image_size=32, weights="none", precision="fp32").fit()
    one = features.transform(path)
    assert one.shape == (1, 1024)
    np.testing.assert_allclose(one, features.transform([path]), rtol=1e-5, atol=1e-6)
    assert list(features.get_feature_names_out()[:2]) == ["vgg16features0", "vgg16features1"]
    assert len(features.get_feature_names_out()) == 1024
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)[None]
    with pytest.raises(FeatureError, match="within 0-1.*multiply the array by 255"):
        features.transform(pixels / 255)
    with pytest.raises(ValueError, match=r"shape \(n, height, width, 3\)"):
        features.transform(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="`weights` must be .*Received: None"):
        VGG16Features(weights=None).fit()


def test_load_store_names_the_splits_and_describes_its_data(store):
    _, cache = store
    with pytest.raises(FeatureError, match="no 'val' rows; its splits are train, validation\\."):
        load_store("latest", split="val", cache=cache)
    data = load_store("latest", split="validation", cache=cache).data
    assert data.dtype == np.float32 and data.ndim == 2 and data.shape[1] == 1024
    assert data.size == data.shape[0] * 1024 and data.nbytes == data.size * 4
    assert repr(data).startswith(f"ShardedFeatures(shape={data.shape}, dtype=float32")


@pytest.mark.parametrize("name", ["dense", "logreg", "svm", "ensemble"])
def test_heads_take_string_labels_and_refuse_misuse(name):
    from sklearn.exceptions import NotFittedError

    from heads import HeadError, create_head

    params = dict(FAST_PARAMS[name])
    if name in ("logreg", "svm"):
        params["search_space"] = {"C": [0.1, 1.0]}
    X, y = small_problem()
    words = np.array(["cat", "dog", "owl"], dtype=object)[y]
    head = create_head(name, **params)
    with pytest.raises(NotFittedError):
        head.predict(X)
    head.fit(X, words)
    assert list(head.classes_) == ["cat", "dog", "owl"] and head.n_features_in_ == X.shape[1]
    assert np.mean(head.predict(X) == words) > 0.8
    assert issubclass(HeadError, ValueError) and issubclass(FeatureError, ValueError)
    with pytest.raises(ValueError, match="Unknown label type"):
        clone(head).fit(X, np.linspace(0, 1, len(X)))
