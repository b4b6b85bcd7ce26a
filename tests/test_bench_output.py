"""The benchmark_model output parser on real output of several tool generations, and on broken output."""
from __future__ import annotations

import pytest

from android_bench.bench_output import parse_benchmark_output
from etf.common import EtfError

# benchmark_model on Android, 2020-era build (yolov5s, 4 threads): plain lines, "Peak memory footprint".
OUT_2020 = """\
STARTING!
Num threads: [4]
Graph: [/data/local/tmp/yolov5s_fp32_640.tflite]
Loaded model /data/local/tmp/yolov5s_fp32_640.tflite
Initialized session in 16.242ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=2 first=360262 curr=248910 min=248910 max=360262 avg=304586 std=55676

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=50 first=249042 curr=250889 min=247067 max=254474 avg=249684 std=1442

Inference timings in us: Init: 16242, First inference: 360262, Warmup (avg): 304586, Inference (avg): 249684
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
Peak memory footprint (MB): init=4.92969 overall=138.809
"""

# A later build on desktop (mobilenet_v1, op profiling on): scientific notation, "Memory footprint delta".
OUT_2021_SCI = """\
STARTING!
Log parameter values verbosely: [0]
Num threads: [4]
Graph: [./mobilenet_v1_1.0_224.tflite]
Enable op profiling: [1]
#threads used for CPU inference: [4]
Loaded model ./mobilenet_v1_1.0_224.tflite
The input model file size (MB): 16.9008
Initialized session in 17.187ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=1 curr=3512391

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=50 first=2990275 curr=2913402 min=2727568 max=3189954 avg=2.95034e+06 std=109798

Inference timings in us: Init: 17187, First inference: 3512391, Warmup (avg): 3.51239e+06, Inference (avg): 2.95034e+06
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
Memory footprint delta from the start of the tool (MB): init=4.21094 overall=46.0859
Profiling Info for Benchmark Initialization:
============================== Run Order ==============================
\t             [node type]\t          [start]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t  [mem KB]\t[times called]\t[Name]
Timings (microseconds): count=1 curr=2345
Timings (microseconds): count=50 first=2990001 curr=2913001 min=2727001 max=3189001 avg=2.9e+06 std=109001
"""

# A recent build with INFO: prefixes, p5/median/p95 and the periodic peak-memory monitor (XNNPACK on CPU).
OUT_RECENT = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Num threads: [4]
INFO: Graph: [/data/local/tmp/model.tflite]
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
VERBOSE: Replacing 58 out of 58 node(s) with delegate (TfLiteXNNPackDelegate) node, yielding 1 partitions for the whole graph.
INFO: The input model file size (MB): 24.6229
INFO: Initialized session in 3.337ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=9 first=81913 curr=55502 min=55502 max=81913 avg=58984.7 std=8115 p5=55502 median=56011 p95=81913

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=1061 first=56576 curr=56299 min=54669 max=60236 avg=56265.8 std=982 p5=55012 median=56120 p95=58004

INFO: Inference timings in us: Init: 3337, First inference: 81913, Warmup (avg): 58984.7, Inference (avg): 56265.8
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=55.4961 overall=55.4961
INFO: Overall peak memory footprint (MB) via periodic monitoring: 93.2383
INFO: Memory status at the end of exeution:
INFO: - VmRSS              : 93 MB
"""

# The 2018-era summary line ("Average inference timings"), with a stats line before it.
OUT_2018 = """\
Loaded model mobilenet_v1_1.0_224_quant.tflite
resolved reporter
Initialized session in 4.452ms
Running benchmark for 1 iterations
count=1 curr=146161

Running benchmark for 50 iterations
count=50 first=137789 curr=137254 min=137079 max=143416 avg=137722 std=896

Average inference timings in us: Warmup: 146161, Init: 4452, no stats: 137722
"""

# The Android benchmark app reports through logcat, summary only.
OUT_LOGCAT_APP = (
    "11-25 08:01:02.345  4242  4260 I tflite  : Average inference timings in us: Warmup: 91471, Init: 4108, "
    "Inference: 80660.1\n"
)


def test_parses_2020_format_with_peak_memory():
    out = parse_benchmark_output(OUT_2020)
    assert out.count == 50
    assert out.inference_avg_ms == pytest.approx(249.684)
    assert out.inference_std_ms == pytest.approx(1.442)
    assert (out.inference_min_ms, out.inference_max_ms) == (pytest.approx(247.067), pytest.approx(254.474))
    assert out.init_ms == pytest.approx(16.242)
    assert out.first_inference_ms == pytest.approx(360.262)
    assert out.warmup_avg_ms == pytest.approx(304.586)
    assert out.peak_memory_mb == pytest.approx(138.809)
    assert out.inference_median_ms is None


def test_parses_scientific_notation_and_ignores_op_profiling_timings():
    out = parse_benchmark_output(OUT_2021_SCI)
    assert out.count == 50
    assert out.inference_avg_ms == pytest.approx(2950.34)
    assert out.inference_std_ms == pytest.approx(109.798)  # the timed line, not the profiler's Timings line
    assert out.warmup_avg_ms == pytest.approx(3512.39)
    assert (out.memory_init_mb, out.memory_overall_mb) == (pytest.approx(4.21094), pytest.approx(46.0859))
    assert out.peak_memory_mb is None  # a footprint delta is not a peak


def test_parses_recent_format_with_prefixes_median_and_periodic_peak():
    out = parse_benchmark_output(OUT_RECENT)
    assert out.count == 1061
    assert out.inference_avg_ms == pytest.approx(56.2658)
    assert out.inference_median_ms == pytest.approx(56.120)
    assert out.inference_std_ms == pytest.approx(0.982)
    assert out.first_inference_ms == pytest.approx(81.913)
    assert out.peak_memory_mb == pytest.approx(93.2383)
    assert out.summary_format == "inference-timings"


def test_parses_2018_average_inference_summary():
    out = parse_benchmark_output(OUT_2018)
    assert out.summary_format == "average-inference-timings"
    assert out.count == 50
    assert out.inference_avg_ms == pytest.approx(137.722)
    assert out.init_ms == pytest.approx(4.452)
    assert out.warmup_avg_ms == pytest.approx(146.161)
    assert out.first_inference_ms is None


def test_parses_logcat_summary_alone():
    out = parse_benchmark_output(OUT_LOGCAT_APP)
    assert out.inference_avg_ms == pytest.approx(80.6601)
    assert out.count is None and out.inference_std_ms is None


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "no timing results"),
        ("\x00\x01garbage\xff\n<html>502 Bad Gateway</html>", "no timing results"),
        (OUT_RECENT.split("INFO: Inference timings")[0], "truncated"),
        ("INFO: STARTING!\nERROR: Could not open '/data/local/tmp/x.tflite'.\nERROR: Failed to mmap model\n", "Could not open"),
        ("STARTING!\nUnconsumed cmdline flags: --bogus=1\n", "Unconsumed cmdline flags"),
    ],
)
def test_broken_output_gives_one_clear_error(text, fragment):
    with pytest.raises(EtfError) as info:
        parse_benchmark_output(text)
    message = str(info.value)
    assert fragment in message and "\n" not in message


def test_every_truncation_of_real_output_parses_or_raises_etferror():
    for sample in (OUT_2020, OUT_2021_SCI, OUT_RECENT, OUT_2018):
        full = parse_benchmark_output(sample)
        for cut in range(0, len(sample), 3):
            try:
                out = parse_benchmark_output(sample[:cut])
            except EtfError:
                continue
            # A prefix that parses holds the whole summary line, never a number cut in half.
            assert out.inference_avg_ms == full.inference_avg_ms
            assert out.count == full.count


def test_non_text_input_is_an_etferror():
    with pytest.raises(EtfError):
        parse_benchmark_output(b"count=1")  # type: ignore[arg-type]
