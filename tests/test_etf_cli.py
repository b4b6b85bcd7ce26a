"""The umbrella ``etf`` command and the conventions every ``etf-*`` command shares: one registry equal to
pyproject's scripts, dispatch, one-line errors, ``--help`` everywhere, no abbreviated options."""
from __future__ import annotations

import argparse
import ast
import importlib
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from etf.cli import COMMANDS, main
from supernet.space import TABLE1

ROOT = Path(__file__).resolve().parents[1]


def etf(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "etf.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)


def test_registry_is_pyprojects_scripts():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts.pop("etf") == "etf.cli:main"
    assert {f"etf-{name}": f"{cmd.module}:main" for name, cmd in COMMANDS.items()} == scripts


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_command_module_has_main_and_a_docstring_saying_what_it_does(name):
    module = importlib.import_module(COMMANDS[name].module)
    assert callable(module.main)
    first, *rest = ast.get_docstring(ast.parse(Path(module.__file__).read_text())).splitlines()
    assert first.startswith(f"``etf-{name}``: ") and len(first) > len(name) + 20
    assert not rest or rest[0] == ""  # the first line is a whole sentence, not the start of a paragraph


def test_help_lists_every_command_with_its_summary():
    r = etf("--help")
    assert r.returncode == 0 and r.stderr == ""
    for name, cmd in COMMANDS.items():
        assert f"  {name} " in r.stdout and cmd.summary in r.stdout
    bare = etf()
    assert bare.returncode == 0 and bare.stdout == r.stdout


def test_help_imports_no_command_module():
    code = ("import sys; from etf.cli import main; main(['--help']); "
            "loaded = [m for m in sys.modules if m.split('.')[0] in ('torch', 'supernet', 'latency', 'search', "
            "'android_bench')]; assert not loaded, loaded")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr


def test_dispatch_runs_the_command():
    r = etf("space", "choices", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == TABLE1.describe()
    direct = subprocess.run([sys.executable, "-m", "supernet.cli.space", "choices", "--json"], capture_output=True,
                            text=True, timeout=120, cwd=ROOT)
    assert r.stdout == direct.stdout


def test_dispatch_passes_exit_codes_and_errors_through(capsys):
    assert main(["space", "show", "topformer-huge"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "etf-space: error:" in err


@pytest.mark.parametrize("args", [["nope"], ["--bogus"]])
def test_unknown_command_is_one_line_and_exit_2(args):
    r = etf(*args)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and args[0] in r.stderr and "space" in r.stderr


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_parser_has_help_and_refuses_abbreviations(name, monkeypatch, capsys):
    made: list[argparse.ArgumentParser] = []
    init = argparse.ArgumentParser.__init__

    def record(self, *a, **k):
        init(self, *a, **k)
        made.append(self)

    monkeypatch.setattr(argparse.ArgumentParser, "__init__", record)
    assert main([name, "--help"]) == 0  # cli_entry turns argparse's exit into main's return value
    assert f"etf-{name}" in capsys.readouterr().out
    assert made and all(p.allow_abbrev is False for p in made), [p.prog for p in made if p.allow_abbrev]


def test_an_abbreviated_option_is_an_error():
    r = etf("space", "size", "topformer-tiny", "--si", "64")
    assert r.returncode == 2 and "unrecognized arguments: --si" in r.stderr
