"""Caches cannot go stale: an unchanged input hits, a change to any input that shapes the result misses.

Covers the operator-conversion cache (``latency.export_op.cache_path``) and the search log's accuracy key
(``search.pipeline._accuracy_settings`` / ``_check_meta``). Source changes are made on real copies of the
source files (the module's file is pointed at an edited copy), version changes by reporting another version.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

import etf.fingerprint as fp
from etf.common import EtfError
from latency import export_op
from search import pipeline
from search.pipeline import SearchJob

KEY = "stem:cout=16,k=3,s=2,side=64"


@pytest.fixture(autouse=True)
def _fresh_caches():
    export_op.converter_version.cache_clear()
    fp.source_digest.cache_clear()
    yield
    export_op.converter_version.cache_clear()
    fp.source_digest.cache_clear()


def _path(tmp_path: Path) -> Path:
    export_op.converter_version.cache_clear()
    fp.source_digest.cache_clear()
    return export_op.cache_path(tmp_path, KEY)


def test_conversion_cache_hits_when_nothing_changed(tmp_path):
    assert _path(tmp_path) == _path(tmp_path)
    assert export_op.cache_path(tmp_path, KEY) != export_op.cache_path(tmp_path, KEY.replace("16", "24"))


def test_conversion_sources_cover_the_code_that_shapes_the_file():
    files = {str(fp.module_file(m).relative_to(Path(__file__).resolve().parents[1]))
             for m in export_op.CONVERSION_SOURCES}
    assert {"supernet/topformer.py", "android_bench/export/convert.py", "android_bench/export/layout.py",
            "latency/operators.py", "latency/export_op.py"} <= files
    assert {"litert-torch", "torch", "ai-edge-litert"} <= set(export_op.CONVERTER_PACKAGES)


@pytest.mark.parametrize("module", export_op.CONVERSION_SOURCES)
def test_conversion_cache_misses_when_a_source_file_changes(tmp_path, monkeypatch, module):
    before = _path(tmp_path)
    edited = tmp_path / "edited.py"
    edited.write_bytes(fp.module_file(module).read_bytes() + b"\n# changed\n")
    real = fp.module_file
    monkeypatch.setattr(fp, "module_file", lambda name: edited if name == module else real(name))
    assert _path(tmp_path) != before


@pytest.mark.parametrize("package", export_op.CONVERTER_PACKAGES)
def test_conversion_cache_misses_when_a_package_version_changes(tmp_path, monkeypatch, package):
    before = _path(tmp_path)
    real = fp.package_versions
    monkeypatch.setattr(fp, "package_versions",
                        lambda names: {k: (v + ".post1" if k == package else v) for k, v in real(names).items()})
    assert _path(tmp_path) != before


def test_conversion_cache_misses_when_the_export_revision_changes(tmp_path, monkeypatch):
    before = _path(tmp_path)
    monkeypatch.setattr(export_op, "OPERATOR_EXPORT_REV", export_op.OPERATOR_EXPORT_REV + 1)
    assert _path(tmp_path) != before


def test_quantized_files_miss_when_the_quantizer_recipe_changes_and_fp32_files_do_not(tmp_path, monkeypatch):
    import android_bench.export.quantize as quantize
    from latency.networks import network_path
    from supernet.presets import PRESETS

    def paths():
        return (export_op.cache_path(tmp_path, KEY, "fp32"), export_op.cache_path(tmp_path, KEY, "int8"),
                network_path(tmp_path, PRESETS["topformer-tiny"], 64, precision="fp32"),
                network_path(tmp_path, PRESETS["topformer-tiny"], 64, precision="int8"))

    before = paths()
    monkeypatch.setattr(quantize, "RECIPE_REV", quantize.RECIPE_REV + 1)
    after = paths()
    assert after[0] == before[0] and after[2] == before[2]  # fp32: no quantizer involved
    assert after[1] != before[1] and after[3] != before[3]


# ----------------------------------------------------------------------------------------------------------
# The search log's accuracy key
# ----------------------------------------------------------------------------------------------------------
@pytest.fixture
def job(tmp_path) -> SearchJob:
    ckpt = tmp_path / "super.pt"
    ckpt.write_bytes(b"weights v1" * 100)
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "images" / "a.png").write_bytes(b"png")
    return SearchJob(out=tmp_path / "search", target=1.0, unit="GFLOPs", supernet=ckpt, data=data)


def test_an_int8_operator_is_quantized_from_the_cached_fp32_file(tmp_path, monkeypatch):
    """convert_cached makes an int8 file from the operator's fp32 file in the same cache (converting that first
    when missing, and keeping it): the same bytes as converting afresh, and a second precision converts nothing."""
    import android_bench.export.convert as convert
    from latency.operators import parse_key

    key = "stem:cout=16,k=3,s=2,hw=64"
    cache = tmp_path / "cache"
    int8 = export_op.cache_path(cache, key, "int8")
    export_op.convert_cached(key, str(int8), "int8")
    fp32 = export_op.cache_path(cache, key)
    assert int8.exists() and fp32.exists()
    fresh = export_op.export_operator(parse_key(key), tmp_path / "fresh.tflite", "int8")
    assert int8.read_bytes() == fresh.read_bytes()
    int8.unlink()

    def no_conversion(*args, **kwargs):
        raise AssertionError("the fp32 file is in the cache: nothing should be converted")

    monkeypatch.setattr(convert, "export_tflite", no_conversion)
    _, path, _ = export_op.convert_cached(key, str(int8), "int8")
    assert Path(path).read_bytes() == fresh.read_bytes()


def test_accuracy_key_is_stable_when_nothing_changed(job):
    out = Path(job.out)
    out.mkdir()
    (out / "search_log.csv").write_text("header\n")
    pipeline._check_meta(out, pipeline._accuracy_settings(job))
    pipeline._check_meta(out, pipeline._accuracy_settings(job))  # same settings: the log is reused


@pytest.mark.parametrize("change", ["eval_size", "n_calib", "n_val", "batch", "dataset", "supernet_bytes",
                                    "supernet_path", "data_file", "data_path", "calib_seed", "accuracy_code"])
def test_accuracy_key_changes_with_every_setting_that_changes_the_score(job, tmp_path, monkeypatch, change):
    before = pipeline._accuracy_settings(job)
    if change in ("eval_size", "n_calib", "n_val", "batch"):
        job = dataclasses.replace(job, **{change: getattr(job, change) + 1})
    elif change == "dataset":
        job = dataclasses.replace(job, dataset="ade20k")
    elif change == "supernet_bytes":  # retrained in place: same path, same size, same mtime
        st = os.stat(job.supernet)
        Path(job.supernet).write_bytes(b"weights v2" * 100)
        os.utime(job.supernet, ns=(st.st_atime_ns, st.st_mtime_ns))
    elif change == "supernet_path":
        other = tmp_path / "other.pt"
        other.write_bytes(Path(job.supernet).read_bytes())
        job = dataclasses.replace(job, supernet=other)
    elif change == "data_file":
        (Path(job.data) / "images" / "b.png").write_bytes(b"png")
    elif change == "data_path":
        other = tmp_path / "data2"
        (other / "images").mkdir(parents=True)
        (other / "images" / "a.png").write_bytes(b"png")
        job = dataclasses.replace(job, data=other)
    elif change == "calib_seed":
        monkeypatch.setattr(pipeline, "CALIB_SEED", pipeline.CALIB_SEED + 1)
    elif change == "accuracy_code":
        edited = tmp_path / "edited.py"
        edited.write_bytes(fp.module_file("supernet.evaluation.evaluator").read_bytes() + b"\n# changed\n")
        real = fp.module_file
        monkeypatch.setattr(fp, "module_file",
                            lambda name: edited if name == "supernet.evaluation.evaluator" else real(name))
        fp.source_digest.cache_clear()
    after = pipeline._accuracy_settings(job)
    assert after != before
    out = Path(job.out)
    out.mkdir(exist_ok=True)
    (out / "search_log.csv").write_text("header\n")
    pipeline._check_meta(out, before)
    with pytest.raises(EtfError, match="other accuracy settings"):  # never replayed as a stale cache
        pipeline._check_meta(out, after)


def test_an_int8_network_is_quantized_from_the_cached_fp32_file(tmp_path, monkeypatch):
    """The same for whole networks (held-out subnets, correction networks, the reference): the fp32 timing file is
    kept in the cache and an int8 one is quantized from it without converting again."""
    import android_bench.export.convert as convert
    from latency.networks import convert_networks, network_path
    from supernet.presets import PRESETS

    tiny, cache = PRESETS["topformer-tiny"], tmp_path / "cache"
    (int8,), _ = convert_networks([tiny], 64, cache, precision="int8")
    assert int8.exists() and network_path(cache, tiny, 64).exists()
    first = int8.read_bytes()
    int8.unlink()

    def no_conversion(*args, **kwargs):
        raise AssertionError("the fp32 file is in the cache: nothing should be converted")

    monkeypatch.setattr(convert, "export_tflite", no_conversion)
    (again,), _ = convert_networks([tiny], 64, cache, precision="int8")
    assert again.read_bytes() == first
