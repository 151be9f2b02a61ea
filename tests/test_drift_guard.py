"""The int8 drift guard: every calibrated model is compared with fp32 on the CPU class it runs on,
the figure is recorded, and a model that drifts is never used: `auto` falls back and says why, an
explicit int8 stops with the figure. (Drift is forced by raising the threshold above any cosine;
other CPU classes are simulated by their flags.)"""

import json

import pytest

from features import FeatureStore
from features.spec import cpu_class, cpu_flags, engine_installed
from pipeline.report import settings_rows
from tests.conftest import extract_args, make_cli, write_split_folder

pytestmark = pytest.mark.skipif(not engine_installed(), reason="int8 needs OpenVINO and NNCF")

OTHER_CPUS = ({"avx2", "avx512f", "avx512_vnni"}, {"avx2", "avx_vnni"}, {"avx2", "avx512f"})  # Cascade Lake, Alder Lake, Skylake-X
UNREACHABLE = 1.0001  # no cosine reaches it: every model "drifts"


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One data folder and one cache (so the model is calibrated once for the module)."""
    cli = make_cli(tmp_path_factory.mktemp("drift"))
    cli.data = write_split_folder(cli.cache.parent / "data", 8, 3)
    return cli


def int8_args(cli, *extra):
    return extract_args(cli.data, cli.cache, "--calibration-images", "4", *extra)


def cached_drift(cli) -> dict:
    (provenance,) = list((cli.cache / "int8-models").glob("*/calibration.json"))
    return json.loads(provenance.read_text())["drift"]


def stores_of(cli, precision):
    stores = [FeatureStore(p.parent) for p in cli.cache.glob("*/manifest.json")]
    return [s for s in stores if s.manifest["config"]["precision"] == precision]


def force_drift(monkeypatch):
    monkeypatch.setattr("features.drift.DRIFT_THRESHOLD", UNREACHABLE)
    monkeypatch.setattr("pipeline.stores.DRIFT_THRESHOLD", UNREACHABLE)


def simulate_cpu(monkeypatch, flags):
    for module in ("features.spec", "features.drift"):
        monkeypatch.setattr(f"{module}.cpu_flags", lambda: set(flags))


def test_a_calibrated_model_is_checked_against_fp32_and_the_figure_is_recorded_and_reported(shared):
    result = shared(*int8_args(shared, "--precision", "int8"))
    assert result.exit_code == 0, result.output
    here = cpu_class(cpu_flags())
    drift = cached_drift(shared)[here]
    assert drift["images"] == 16 and drift["image_size"] == 32
    assert 0.99 <= drift["min_cosine"] <= drift["mean_cosine"] <= 1.0
    (store,) = stores_of(shared, "int8")
    assert store.manifest["int8"]["calibration"]["drift"][here] == drift
    rows = dict(settings_rows(store))
    assert rows["precision"] == "int8 on openvino"
    assert f"{here}: min cosine to fp32 {drift['min_cosine']:.4f}" in rows["int8 drift"]


def test_an_explicit_int8_that_drifts_stops_with_the_measured_figure(shared, monkeypatch):
    force_drift(monkeypatch)
    before = {p.parent.name for p in shared.cache.glob("*/manifest.json")}
    result = shared(*int8_args(shared, "--precision", "int8", "--pooling", "avg"))
    assert result.exit_code != 0
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "int8 features drift from fp32 on this CPU" in errors[0], result.output
    assert f"min cosine {cached_drift(shared)[cpu_class(cpu_flags())]['min_cosine']:.4f} < {UNREACHABLE}" in errors[0]
    assert {p.parent.name for p in shared.cache.glob("*/manifest.json")} == before  # no store written


def test_auto_falls_back_from_a_drifting_model_to_the_next_fastest_path_and_says_why(shared, monkeypatch):
    force_drift(monkeypatch)
    simulate_cpu(monkeypatch, {"avx2", "fma"})  # auto picks int8 here, and fp32 without it
    result = shared(*int8_args(shared, "--precision", "auto", "--pooling", "max"))
    assert result.exit_code == 0, result.output
    assert "precision auto -> int8: the CPU has AVX2" in result.output
    assert "precision auto -> fp32 on the openvino engine: int8 drifts from fp32 on this CPU (avx2" in result.output
    (store,) = [s for s in stores_of(shared, "fp32") if s.manifest["config"]["pooling"] == "max"]
    assert store.manifest["config"]["engine"] == "openvino" and "int8" not in store.manifest


def test_a_cached_model_is_checked_again_on_a_cpu_of_another_class(shared, monkeypatch):
    assert shared(*int8_args(shared, "--precision", "int8")).exit_code == 0
    classes = set(cached_drift(shared))
    flags = next(flags for flags in OTHER_CPUS if cpu_class(flags) not in classes)  # not this host's class
    simulate_cpu(monkeypatch, flags)
    result = shared(*int8_args(shared, "--precision", "int8", "--pooling", "avgmax", "--views", "2"))
    assert result.exit_code == 0, result.output
    assert "checking the calibrated model against fp32 on 16 training photos at 32 px" in result.output
    assert set(cached_drift(shared)) == classes | {cpu_class(flags)}
    (store,) = [s for s in stores_of(shared, "int8") if s.manifest["config"]["views"] == 2]
    assert set(store.manifest["int8"]["calibration"]["drift"]) == classes | {cpu_class(flags)}
