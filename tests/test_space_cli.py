"""`etf-space` as a user runs it: output, JSON, and one-line errors with exit code 2."""
import json
import subprocess
import sys

import pytest

from supernet.presets import PRESETS
from supernet.space import TABLE1


def run(*args):
    return subprocess.run([sys.executable, "-m", "supernet.cli.space", *args], capture_output=True, text=True, timeout=120)


def test_choices_prints_every_coordinate_and_the_size():
    r = run("choices")
    assert r.returncode == 0
    assert "stages.4.width             88, 96, 104" in r.stdout
    assert "vits.0.attn_ratio          1.6, 1.8, 2, 2.2, 2.4" in r.stdout
    assert str(TABLE1.size()) in r.stdout
    d = json.loads(run("choices", "--json").stdout)
    assert d["size"] == TABLE1.size()
    assert d["stages"][3]["widths"] == list(range(56, 137, 8))


def test_show_sample_and_size(tmp_path):
    assert json.loads(run("show", "topformer-base").stdout) == json.loads(PRESETS["topformer-base"].to_json())
    a, b = run("sample", "--seed", "5").stdout, run("sample", "--seed", "5").stdout
    assert a == b and json.loads(a) == json.loads(TABLE1.sample(5).to_json())
    f = tmp_path / "cfg.json"
    f.write_text(a)
    size = json.loads(run("size", str(f), "--size", "256", "--json").stdout)
    assert size["params"] > 0 and size["flops"] > size["conv_macs"] > 0
    tiny = json.loads(run("size", "topformer-tiny", "--json").stdout)
    assert round(tiny["params"] / 1e6, 1) == 1.4


@pytest.mark.parametrize("args, needle", [
    (["show", "topformer-huge"], "unknown preset 'topformer-huge'"),
    (["size", "{bad}"], "unknown preset"),
])
def test_bad_names_give_one_line_and_exit_2(args, needle):
    r = run(*args)
    assert r.returncode == 2
    assert needle in r.stderr and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_bad_files_give_one_line_and_exit_2(tmp_path):
    bad_json = tmp_path / "a.json"
    bad_json.write_text("{ not json")
    cfg = json.loads(PRESETS["topformer-tiny"].to_json())
    cfg["stages"][3]["width"] = 60
    out_of_space = tmp_path / "b.json"
    out_of_space.write_text(json.dumps(cfg))
    for path, needle in ((bad_json, "not valid JSON"),
                         (out_of_space, "stages[3].width=60 is not in the search space; allowed: 56, 64"),
                         (tmp_path / "missing.json", "not found")):
        r = run("size", str(path))
        assert r.returncode == 2, r.stderr
        assert needle in r.stderr and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
