"""Build the one shell script that benchmarks a batch of models on a phone, and split its output (pure).

One ``adb shell`` round trip runs every model of a batch: per model it prints the CPU governors and thermal
readings, runs ``benchmark_model`` pinned with ``taskset``, prints the exit code, then pauses (cool-down).
A background heartbeat line every 2 s lets the host notice a dead link within seconds, and a HUP/INT/TERM
trap removes the work folder if the session is cut.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

HEARTBEAT = "__ETF_ALIVE__"
HEARTBEAT_PERIOD_S = 2
DONE = "__ETF_DONE__"
GOVERNOR_GLOB = "/sys/devices/system/cpu/cpu*/cpufreq/scaling_governor"
THERMAL_GLOB = "/sys/class/thermal/thermal_zone*/temp"

_BEGIN = re.compile(r"^__ETF_BEGIN__ (\d+)\s*$")
_END = re.compile(r"^__ETF_END__ (\d+) (-?\d+)\s*$")
_GOV = re.compile(r"^__ETF_GOVERNOR__ ?(.*)$")
_TEMP = re.compile(r"^__ETF_TEMP__ ?(.*)$")


@dataclass
class ModelSection:
    """The part of the batch output that belongs to one model."""

    index: int
    output: str = ""
    exit_code: int | None = None
    governors: str = ""
    temperatures: str = ""


def benchmark_flags(graph: str, *, threads: int, runs: int, warmup: int, extra_args: list[str]) -> list[str]:
    """``benchmark_model`` flags for exactly ``runs`` timed runs after ``warmup`` warm-up runs."""
    return [f"--graph={graph}", f"--num_threads={threads}", f"--num_runs={runs}", f"--warmup_runs={warmup}",
            "--min_secs=0", "--warmup_min_secs=0", "--use_xnnpack=true", *extra_args]


def build_batch_script(
    work_dir: str,
    model_names: list[str],
    *,
    threads: int,
    runs: int,
    warmup: int,
    cpu_mask: str | None,
    cooldown_s: float,
    extra_args: list[str] | None = None,
    binary: str = "benchmark_model",
) -> str:
    """The shell script for one batch; ``model_names`` are files already pushed into ``work_dir``."""
    wd = shlex.quote(work_dir)
    pin = f"taskset {shlex.quote(cpu_mask)} " if cpu_mask else ""
    # The trap's action is one quoted word; the quoted work dir inside it is quoted again as part of that word.
    on_hangup = f"kill $HB 2>/dev/null; rm -rf {wd}; exit 129"
    lines = [  # the trap first: a session cut from the very start still removes the work folder
        f"trap {shlex.quote(on_hangup)} HUP INT TERM",
        f"cd {wd} || exit 1",
        f"( while sleep {HEARTBEAT_PERIOD_S} >/dev/null 2>&1; do echo {HEARTBEAT}; done ) & HB=$!",
    ]
    for i, name in enumerate(model_names):
        flags = " ".join(shlex.quote(f) for f in benchmark_flags(f"{work_dir}/{name}", threads=threads, runs=runs,
                                                                  warmup=warmup, extra_args=extra_args or []))
        lines += [
            f"echo __ETF_BEGIN__ {i}",
            f"echo \"__ETF_GOVERNOR__ $(cat {GOVERNOR_GLOB} 2>/dev/null | tr '\\n' ' ')\"",
            f"echo \"__ETF_TEMP__ $(cat {THERMAL_GLOB} 2>/dev/null | tr '\\n' ' ')\"",
            f"{pin}{shlex.quote('./' + binary)} {flags} 2>&1",
            f"echo __ETF_END__ {i} $?",
        ]
        if i < len(model_names) - 1 and cooldown_s > 0:
            lines.append(f"sleep {cooldown_s:g}")
    lines += ["kill $HB 2>/dev/null", "rm -f " + " ".join(shlex.quote(n) for n in model_names), f"echo {DONE}"]
    return "; ".join(lines)


def split_batch_output(text: str) -> tuple[dict[int, ModelSection], bool]:
    """Split a batch's output into per-model sections; the bool says whether the script ran to the end."""
    sections: dict[int, ModelSection] = {}
    current: ModelSection | None = None
    body: list[str] = []
    finished = False
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.rstrip("\r")
        if line.strip() == HEARTBEAT:
            continue
        if line.strip() == DONE:
            finished = True
            continue
        m = _BEGIN.match(line)
        if m:
            current = sections.setdefault(int(m.group(1)), ModelSection(int(m.group(1))))
            body = []
            continue
        if current is None:
            continue
        m = _END.match(line)
        if m and int(m.group(1)) == current.index:
            current.output = "".join(f"{ln}\n" for ln in body)  # lines were complete: keep their newlines
            current.exit_code = int(m.group(2))
            current = None
            continue
        gm, tm = _GOV.match(line), _TEMP.match(line)
        if gm:
            current.governors = gm.group(1)
        elif tm:
            current.temperatures = tm.group(1)
        else:
            body.append(line)
    if current is not None:  # cut off mid-model
        current.output = "\n".join(body)
    return sections, finished
