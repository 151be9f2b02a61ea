"""`--precision auto`: the fastest arithmetic the CPU runs natively, and the reason, in one line."""


import pytest

from features.spec import (choose_engine, choose_precision, cpu_class, cpu_flags, engine_installed, explain_precision,
                           fallback_precision)
from tests.conftest import cli_process, extract_args


ZEN4 = {"avx2", "avx512f", "avx512_bf16", "avx512_vnni"}  # native bf16 and VNNI
SAPPHIRE_RAPIDS = {"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8", "amx_tile"}
CASCADE_LAKE = {"avx2", "avx512f", "avx512_vnni"}  # VNNI only
ALDER_LAKE = {"avx2", "avx_vnni"}  # VNNI on AVX2 only
ZEN3 = {"avx2", "fma"}  # AVX2 only: no AVX-512, no VNNI, no bf16
SKYLAKE_SERVER = {"avx2", "avx512f"}  # AVX-512 without VNNI
SANDY_BRIDGE = {"avx", "sse4_2"}  # no AVX2


@pytest.mark.parametrize("flags, installed, precision, words", [
    (ZEN4, True, "int8", "AVX512_VNNI and OpenVINO is installed"),
    (ZEN4, False, "bf16", "bfloat16 natively (AVX512_BF16); int8 would be faster"),
    (SAPPHIRE_RAPIDS, True, "int8", "AMX_INT8 and AVX512_VNNI"),
    (SAPPHIRE_RAPIDS, False, "bf16", "AMX_BF16 and AVX512_BF16"),
    (CASCADE_LAKE, True, "int8", "AVX512_VNNI and OpenVINO is installed"),
    (CASCADE_LAKE, False, "fp32", "no native bfloat16 (AVX512_BF16, AMX); int8 would be faster (the CPU has AVX512_VNNI)"),
    (ALDER_LAKE, True, "int8", "AVX_VNNI"),
    (ALDER_LAKE, False, "fp32", "not installed: pip install"),
    (ZEN3, True, "int8", "the CPU has AVX2 and OpenVINO is installed"),
    (ZEN3, False, "fp32", "int8 would be faster (the CPU has AVX2) but needs OpenVINO"),
    (SKYLAKE_SERVER, True, "int8", "the CPU has AVX2 and OpenVINO"),
    (SANDY_BRIDGE, True, "fp32", "no native bfloat16"),
    (set(), True, "fp32", "no native bfloat16"),  # flags unknown (not Linux)
])
def test_auto_picks_the_fastest_native_precision_and_says_why(flags, installed, precision, words):
    chosen, reason = choose_precision(flags, installed)
    assert chosen == precision
    assert words in reason, reason


@pytest.mark.parametrize("flags, installed, engines", [
    (ZEN4, True, {"int8": "openvino", "bf16": "openvino", "fp32": "openvino"}),
    (SAPPHIRE_RAPIDS, True, {"int8": "openvino", "bf16": "openvino", "fp32": "openvino"}),  # bf16 1.3x Keras
    (SAPPHIRE_RAPIDS, False, {"int8": "openvino", "bf16": "keras", "fp32": "keras"}),
    (ZEN3, True, {"int8": "openvino", "fp32": "openvino", "bf16": "keras"}),  # OpenVINO fp32 1.5x Keras there
    (ZEN3, False, {"int8": "openvino", "fp32": "keras"}),  # (int8 then says what to install)
    (SANDY_BRIDGE, True, {"fp32": "keras", "bf16": "keras"}),
    (set(), True, {"fp32": "keras"}),
])
def test_auto_engine_is_openvino_wherever_it_runs_the_precision_natively(flags, installed, engines):
    assert {p: choose_engine(p, flags, installed) for p in engines} == engines


@pytest.mark.parametrize("flags, klass", [
    (SAPPHIRE_RAPIDS, "amx"), (ZEN4, "avx512_vnni"), (CASCADE_LAKE, "avx512_vnni"), (ALDER_LAKE, "avx_vnni"),
    (SKYLAKE_SERVER, "avx512"), (ZEN3, "avx2"), (SANDY_BRIDGE, "baseline"), (set(), "baseline"),
])
def test_each_cpu_falls_in_the_class_of_its_int8_arithmetic(flags, klass):
    assert cpu_class(flags) == klass


@pytest.mark.parametrize("flags, fallback", [(ZEN4, "bf16"), (SAPPHIRE_RAPIDS, "bf16"), (ZEN3, "fp32"),
                                             (CASCADE_LAKE, "fp32")])
def test_without_int8_auto_falls_back_to_the_next_fastest_path(flags, fallback):
    assert fallback_precision(flags)[0] == fallback


def test_auto_on_this_cpu_is_the_pure_choice_and_explicit_precisions_pass_through():
    assert explain_precision("auto") == choose_precision(cpu_flags(), engine_installed())
    assert explain_precision("fp32") == ("fp32", None)
    assert explain_precision("int8") == ("int8", None)


def test_features_prints_what_auto_chose(cli, split_folder):
    chosen, reason = choose_precision(cpu_flags(), engine_installed())
    result = cli(*extract_args(split_folder, cli.cache, "--precision", "auto", "--calibration-images", "4"))
    assert result.exit_code == 0, result.output
    assert f"precision auto -> {chosen}: {reason}" in result.output
    engine = choose_engine(chosen, cpu_flags(), engine_installed())
    assert f"classes, computed in {chosen} on {engine} ->" in result.output  # what ran, on every CPU
    (manifest,) = list(cli.cache.glob("*/manifest.json"))
    assert f'"precision": "{chosen}"' in manifest.read_text()


def test_auto_without_the_engine_falls_back_and_names_the_fix(tmp_path, split_folder):
    """A real process in which openvino cannot be imported: no int8, and the line says why."""
    result = cli_process(*extract_args(split_folder, tmp_path / "cache"), "--precision", "auto",
                         prelude="sys.modules['openvino'] = None")
    assert result.returncode == 0, result.stderr
    expected, reason = choose_precision(cpu_flags(), openvino_installed=False)
    assert f"precision auto -> {expected}: {reason}" in result.stdout + result.stderr
    assert f"computed in {expected} on keras ->" in result.stdout + result.stderr
    assert expected != "int8"
    assert not (tmp_path / "cache" / "int8-models").exists()
