"""``etf``: the umbrella command; ``etf COMMAND [ARGS...]`` runs ``etf-COMMAND [ARGS...]``.

``etf`` and ``etf --help`` list every command with one line each. :data:`COMMANDS` is the one registry of the
project's commands (the ``etf-*`` scripts of pyproject.toml are the same list, checked by the tests); command
modules are imported only when run, so listing them is fast.
"""
from __future__ import annotations

import importlib
import sys
from typing import NamedTuple

from etf.common import EXIT_BAD_INPUT, cli_entry


class Command(NamedTuple):
    module: str  #: the module whose ``main(argv=None) -> int`` runs the command
    summary: str  #: one line for ``etf --help``


#: name -> command; ``etf NAME`` is ``etf-NAME`` (pyproject.toml ``[project.scripts]``), in workflow order.
COMMANDS: dict[str, Command] = {
    "space": Command("supernet.cli.space", "look at the search space, the presets and any config's size"),
    "make-synthetic": Command("supernet.cli.make_synthetic", "write the synthetic segmentation set (not ADE20K)"),
    "train": Command("supernet.cli.train", "train the weight-sharing TopFormer supernet"),
    "finetune": Command("supernet.cli.finetune", "train one subnet on its own from its inherited supernet weights"),
    "eval": Command("supernet.cli.eval", "mIoU of one subnet of a trained supernet, after BN recalibration"),
    "profile": Command("latency.cli.profile", "build per-operator latency tables for devices (resumable)"),
    "predict": Command("latency.cli.predict", "predicted latency of one architecture on one device"),
    "predictor-report": Command("latency.cli.report", "how well the latency predictor does on unseen subnets"),
    "record": Command("latency.cli.record", "time etf exports beside the reference and record them (refits)"),
    "search": Command("search.cli.search", "find the most accurate subnet under a latency or FLOPs target"),
    "demo": Command("search.cli.demo", "the whole flow on this CPU, from nothing"),
    "export": Command("android_bench.cli.export", "a subnet config plus weights -> checked .tflite and .onnx"),
    "bench": Command("android_bench.cli.bench", "time .tflite and .onnx files side by side on a device"),
    "devices": Command("android_bench.cli.devices", "list the devices etf can benchmark on and check each"),
}


def usage() -> str:
    """The text of ``etf --help``: every command with its summary."""
    width = max(len(name) for name in COMMANDS) + 2
    lines = ["usage: etf COMMAND [ARGS...]", "",
             "Efficient-TopFormer: find fast, accurate TopFormer segmentation subnets for phones.", "",
             "commands (each is also installed as etf-COMMAND):"]
    lines += [f"  {name:<{width}}{cmd.summary}" for name, cmd in COMMANDS.items()]
    lines += ["", "Run 'etf COMMAND --help' for a command's options."]
    return "\n".join(lines)


@cli_entry("etf")
def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = args[0], args[1:]
    cmd = COMMANDS.get(name)
    if cmd is None:
        what = "option" if name.startswith("-") else "command"
        print(f"etf: error: unknown {what} {name!r}; commands: {', '.join(COMMANDS)} (see etf --help)",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    return importlib.import_module(cmd.module).main(rest)


if __name__ == "__main__":
    raise SystemExit(main())
