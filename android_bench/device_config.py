"""Named devices from a TOML file the user edits, and :func:`resolve_device` used by every CLI.

Default file: ``$ETF_DEVICES`` or ``~/.config/etf/devices.toml`` (``$XDG_CONFIG_HOME`` respected). Example::

    [devices.pixel]
    transport = "tcp"                 # or "usb" (then serial = "...") or "local"
    address = "192.168.1.20:5555"
    cpu_mask = "f0"                   # taskset mask: the big cores
    threads = 1
    benchmark_model = "~/bin/benchmark_model_android_arm64"

``local`` (this CPU) is always available, with or without a file.
"""
from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from android_bench.device import Device, setting_number
from android_bench.local_device import LocalDevice
from etf.common import EtfError

LOCAL = "local"
_TRANSPORTS = ("tcp", "usb", "local")
_KEYS = {"transport", "address", "serial", "cpu_mask", "threads", "benchmark_model", "work_dir", "connect_timeout_s",
         "run_timeout_s", "cooldown_s", "extra_args", "batch_size"}


def config_dir() -> Path:
    """``$XDG_CONFIG_HOME/etf`` or ``~/.config/etf``."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "etf"


def default_config_path() -> Path:
    """``$ETF_DEVICES`` if set, else ``~/.config/etf/devices.toml``."""
    env = os.environ.get("ETF_DEVICES")
    return Path(env).expanduser() if env else config_dir() / "devices.toml"


def load_device_table(config_path: str | Path | None = None) -> tuple[Path, dict[str, dict[str, Any]]]:
    """Read the ``[devices.*]`` tables; a missing file gives an empty table, a broken one an EtfError."""
    path = Path(config_path).expanduser() if config_path else default_config_path()
    if not path.exists():
        if config_path:
            raise EtfError(f"device config not found: {path}")
        return path, {}
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise EtfError(f"{path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise EtfError(f"cannot read {path}: {exc.strerror}") from None
    devices = data.get("devices", {})
    if not isinstance(devices, dict) or any(not isinstance(v, dict) for v in devices.values()):
        raise EtfError(f"{path}: devices must be tables like [devices.pixel]")
    return path, devices


def _device_from_entry(name: str, entry: dict[str, Any], path: Path) -> Device:
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise EtfError(f"{path}: [devices.{name}] has unknown key(s) {', '.join(unknown)}; "
                       f"known: {', '.join(sorted(_KEYS))}")
    transport = entry.get("transport", "tcp")
    if transport not in _TRANSPORTS:
        raise EtfError(f"{path}: [devices.{name}] transport must be one of {', '.join(_TRANSPORTS)}, got {transport!r}")
    threads = entry.get("threads", 1)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise EtfError(f"{path}: [devices.{name}] threads must be a positive integer")
    if transport == "local":
        try:
            cooldown = float(setting_number(entry, "cooldown_s", 0.5, low=0))
        except ValueError as exc:
            raise EtfError(f"{path}: [devices.{name}] {exc}") from None
        return LocalDevice(name=name, threads=threads, cooldown_s=cooldown)
    from android_bench.adb_device import AdbDevice, AdbSettings

    try:
        settings = AdbSettings.from_entry(name, entry)
    except (TypeError, ValueError) as exc:
        raise EtfError(f"{path}: [devices.{name}] {exc}") from None
    return AdbDevice(settings)


def resolve_device(name_or_none: str | None, config_path: str | Path | None = None) -> Device:
    """The device called ``name_or_none`` (None means ``local``); unknown names give a one-line EtfError."""
    name = name_or_none or LOCAL
    path, table = load_device_table(config_path) if (name != LOCAL or config_path) else (default_config_path(), {})
    if name in table:
        return _device_from_entry(name, table[name], path)
    if name == LOCAL:
        return LocalDevice()
    known = ", ".join([LOCAL] + sorted(k for k in table if k != LOCAL))
    where = f"{path}" if path.exists() else f"{path} (no such file; see android_bench/README.md)"
    raise EtfError(f"unknown device {name!r}; known devices: {known} (config: {where})")


def all_devices(config_path: str | Path | None = None) -> list[Device]:
    """``local`` plus every configured device, in file order."""
    path, table = load_device_table(config_path)
    devices = [] if LOCAL in table else [LocalDevice()]
    devices += [_device_from_entry(name, entry, path) for name, entry in table.items()]
    return devices
