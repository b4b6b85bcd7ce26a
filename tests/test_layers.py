"""Import layering of the installed packages, checked statically with ``ast`` (nothing is imported).

A module may import its own layer and the layers below it, never a layer above. Every ``import`` counts:
module level, inside functions, under ``if``/``try``, and relative imports (resolved to absolute names).
"""
from __future__ import annotations

import ast
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# --- The layer map, bottom to top --------------------------------------------------------------------------
# Each module belongs to the layer of its longest matching prefix (``supernet.data`` beats ``supernet``).
# The CLIs (``<pkg>.cli`` and the umbrella ``etf.cli``) form the top layer.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("common", ("etf",)),  # etf.common: the error type, atomic files, the CLI wrapper
    ("supernet core", ("supernet",)),  # space, presets, size, trace, topformer, elastic, model
    ("supernet.data", ("supernet.data",)),
    ("supernet.training", ("supernet.training",)),
    ("supernet.evaluation", ("supernet.evaluation",)),
    ("android_bench", ("android_bench",)),  # deployment: export builds/converts the network; devices time it
    ("latency", ("latency",)),  # operator tables, the predictor
    ("search", ("search",)),  # search, pipeline, demo flow
    ("cli", ("etf.cli", "etf.__main__", "supernet.cli", "android_bench.cli", "latency.cli", "search.cli")),
]
TOP_PACKAGES = ("etf", "supernet", "android_bench", "latency", "search")
CLI_LAYER = "cli"
#: Only the umbrella command may import the packages' CLI modules.
CLI_IMPORTERS = ("etf.cli", "etf.__main__")
#: Test equipment (loopback ADB peer, benchmark_model stand-in) lives here; packages never import it.
TEST_PACKAGE = "tests"
SUPERNET_CORE = "supernet core"
SUPERNET_ABOVE_CORE = ("supernet.data", "supernet.training", "supernet.evaluation", "supernet.cli")

_RANK = {name: rank for rank, (name, _) in enumerate(LAYERS)}


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer_of(module: str) -> str | None:
    """The layer of ``module`` (longest matching prefix), or None for a module outside the packages."""
    best: tuple[int, str] | None = None
    for name, prefixes in LAYERS:
        for prefix in prefixes:
            if _within(module, prefix) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), name)
    return best[1] if best else None


# --- Reading the imports --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    file: Path
    line: int

    def where(self) -> str:
        return f"{self.file.relative_to(REPO)}:{self.line}"


def installed_packages() -> list[str]:
    """Top-level packages pyproject.toml installs (``include = ["etf", "etf.*", ...]``)."""
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    include = meta["tool"]["setuptools"]["packages"]["find"]["include"]
    return sorted({pattern.split(".")[0] for pattern in include})


def package_modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the installed packages."""
    modules: dict[str, Path] = {}
    for package in installed_packages():
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _resolve_relative(importer: str, is_package: bool, level: int, module: str | None) -> str:
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    if level - 1 >= len(base):
        raise ValueError(f"relative import beyond the top package in {importer}")
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def imports_of(module: str, path: Path, known: set[str]) -> list[Import]:
    """Every import in ``path`` (any depth), as absolute module names; ``from a import b`` is ``a.b`` when
    ``a.b`` is a module, else ``a``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(module, alias.name, path, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                target = _resolve_relative(module, path.name == "__init__.py", node.level, node.module)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.append(Import(module, sub if sub in known else target, path, node.lineno))
    return sorted(found, key=lambda imp: imp.line)


def all_imports() -> list[Import]:
    modules = package_modules()
    known = set(modules)
    return [imp for name, path in modules.items() for imp in imports_of(name, path, known)]


def _is_cli(module: str) -> bool:
    return layer_of(module) == CLI_LAYER


# --- The checks ---------------------------------------------------------------------------------------------
def test_every_installed_package_is_in_the_layer_map():
    assert set(installed_packages()) == set(TOP_PACKAGES), "pyproject installs a package the layer map lacks"
    unmapped = [m for m in package_modules() if layer_of(m) is None]
    assert unmapped == []


def test_no_layer_imports_a_layer_above_it():
    violations = []
    for imp in all_imports():
        low, high = layer_of(imp.importer), layer_of(imp.imported)
        if low is not None and high is not None and _RANK[high] > _RANK[low]:
            violations.append(f"{imp.where()}: {imp.importer} ({low}) imports {imp.imported} ({high})")
    assert violations == [], "lower layer imports a higher one:\n" + "\n".join(violations)


def test_no_package_module_imports_the_tests():
    violations = [f"{imp.where()}: {imp.importer} imports {imp.imported}"
                  for imp in all_imports() if _within(imp.imported, TEST_PACKAGE)]
    assert violations == [], "package modules import test equipment:\n" + "\n".join(violations)


def test_only_the_umbrella_command_imports_cli_modules():
    violations = [f"{imp.where()}: {imp.importer} imports {imp.imported}"
                  for imp in all_imports()
                  if _is_cli(imp.imported) and not any(_within(imp.importer, c) for c in CLI_IMPORTERS)]
    assert violations == [], "only etf.cli may import <pkg>.cli modules:\n" + "\n".join(violations)


def test_supernet_core_imports_none_of_data_training_evaluation_cli():
    violations = [f"{imp.where()}: {imp.importer} imports {imp.imported}"
                  for imp in all_imports()
                  if layer_of(imp.importer) == SUPERNET_CORE
                  and any(_within(imp.imported, above) for above in SUPERNET_ABOVE_CORE)]
    assert violations == [], "the supernet core reaches above itself:\n" + "\n".join(violations)


# --- The checker itself -------------------------------------------------------------------------------------
def test_checker_sees_nested_and_relative_imports(tmp_path):
    src = tmp_path / "__init__.py"  # stands in for supernet/cli/__init__.py
    src.write_text("import os\n"
                   "def f():\n"
                   "    from ..data import datasets\n"
                   "    if True:\n"
                   "        from . import train\n"
                   "        import tests.equipment.adb_peer\n"
                   "    from .. import model\n")
    known = {"supernet.cli.train", "supernet.data.datasets"}
    got = [(i.imported, i.line) for i in imports_of("supernet.cli", src, known)]
    assert got == [("os", 1), ("supernet.data.datasets", 3), ("supernet.cli.train", 5),
                   ("tests.equipment.adb_peer", 6), ("supernet", 7)]
    assert _resolve_relative("supernet.cli.eval", False, 2, "model") == "supernet.model"
    with pytest.raises(ValueError):  # Python refuses to climb above the top package; so does the checker
        _resolve_relative("supernet", True, 2, "latency")


@pytest.mark.parametrize("module, layer", [
    ("etf.common", "common"), ("etf.cli", "cli"), ("supernet.space", "supernet core"),
    ("supernet.trace", "supernet core"), ("supernet.training.train", "supernet.training"),
    ("supernet.cli.train", "cli"), ("android_bench.export.convert", "android_bench"),
    ("latency.predictor", "latency"), ("search.demo", "search"), ("search.cli.demo", "cli"), ("numpy", None),
])
def test_layer_of(module, layer):
    assert layer_of(module) == layer
