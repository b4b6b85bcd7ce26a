"""The ``adb`` device kind: an Android phone over TCP or USB through ``adb_shell``, timing with ``benchmark_model``.

Per ``benchmark_many`` call: one connection, the binary pushed once, models pushed in batches, one shell round
trip per batch (see :mod:`android_bench.adb_script`), and the work folder removed in every case, reconnecting
once to do so if the link dropped.
"""
from __future__ import annotations

import os
import secrets
import shlex
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from android_bench.adb_script import HEARTBEAT_PERIOD_S, ModelSection, build_batch_script, split_batch_output
from android_bench.bench_output import parse_benchmark_output
from android_bench.device import Device, DeviceStatus, ProgressFn, setting_number
from android_bench.model_files import ONNX, model_kind
from android_bench.stats import BenchStats, MeasureProtocol, cv_warning, parse_governors, parse_temperatures
from etf.common import EtfError

BINARY_NAME = "benchmark_model"


def adb_key_path() -> Path:
    """``$ETF_ADB_KEY`` or ``~/.config/etf/adbkey`` (the public half is ``<path>.pub``)."""
    from android_bench.device_config import config_dir

    env = os.environ.get("ETF_ADB_KEY")
    return Path(env).expanduser() if env else config_dir() / "adbkey"


def load_signer(path: Path | None = None):
    """The RSA signer for ADB auth; generates a 2048-bit key pair on first use."""
    from adb_shell.auth.keygen import keygen
    from adb_shell.auth.sign_pythonrsa import PythonRSASigner

    path = path or adb_key_path()
    if not path.exists() or not Path(str(path) + ".pub").exists():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            keygen(str(path))
            path.chmod(0o600)
        except OSError as exc:
            raise EtfError(f"cannot create the ADB key at {path}: {exc.strerror} "
                           "(set ETF_ADB_KEY to another path)") from None
    try:
        return PythonRSASigner.FromRSAKeyPath(str(path))
    except (OSError, ValueError) as exc:
        raise EtfError(f"cannot read the ADB key {path}: {exc} (delete it to make a new one)") from None


@dataclass
class AdbSettings:
    """One ``[devices.NAME]`` entry of transport tcp or usb."""

    name: str
    transport: str = "tcp"
    address: str | None = None
    serial: str | None = None
    cpu_mask: str | None = "f0"
    threads: int = 1
    benchmark_model: Path | None = None
    work_dir: str = "/data/local/tmp"
    connect_timeout_s: float = 5.0
    run_timeout_s: float = 1800.0
    cooldown_s: float = 2.0
    extra_args: list[str] = field(default_factory=list)
    batch_size: int = 16

    @classmethod
    def from_entry(cls, name: str, entry: dict[str, Any]) -> "AdbSettings":
        transport = entry.get("transport", "tcp")
        s = cls(name=name, transport=transport)
        if transport == "tcp":
            address = entry.get("address")
            if not isinstance(address, str) or ":" not in address:
                raise ValueError('needs address = "host:port" for transport "tcp"')
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f'address must be "host:port", got {address!r}')
            s.address = address
        else:
            s.serial = entry.get("serial")
        mask = entry.get("cpu_mask", "f0")
        hex_digits = set("0123456789abcdefABCDEF")
        if mask is not None and (not isinstance(mask, str) or not set(mask) <= hex_digits):
            raise ValueError(f"cpu_mask must be a hex string like \"f0\" (or \"\" for no pinning), got {mask!r}")
        s.cpu_mask = mask or None
        s.threads = int(setting_number(entry, "threads", 1, low=1, integer=True))
        if entry.get("benchmark_model"):
            s.benchmark_model = Path(str(entry["benchmark_model"])).expanduser()
        s.work_dir = str(entry.get("work_dir", s.work_dir)).rstrip("/") or "/data/local/tmp"
        s.connect_timeout_s = float(setting_number(entry, "connect_timeout_s", s.connect_timeout_s, low=0.1))
        s.run_timeout_s = float(setting_number(entry, "run_timeout_s", s.run_timeout_s, low=1))
        s.cooldown_s = float(setting_number(entry, "cooldown_s", s.cooldown_s, low=0))
        extra = entry.get("extra_args", [])
        if not isinstance(extra, list) or not all(isinstance(a, str) for a in extra):
            raise ValueError("extra_args must be a list of strings")
        s.extra_args = list(extra)
        s.batch_size = int(setting_number(entry, "batch_size", s.batch_size, low=1, integer=True))
        return s

    @property
    def where(self) -> str:
        return self.address if self.transport == "tcp" else f"usb:{self.serial or 'any'}"


class _LinkLost(Exception):
    """The connection to the phone broke."""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]


class AdbDevice(Device):
    """A phone reached with ``adb_shell``; models are timed by TFLite's ``benchmark_model`` on the device."""

    kind = "adb"

    def __init__(self, settings: AdbSettings) -> None:
        self.settings = settings
        self.name = settings.name
        self.default_threads = settings.threads
        self.default_cooldown_s = settings.cooldown_s

    # -- connection ------------------------------------------------------------------------------------------
    def _connect(self, timeout_s: float | None = None):
        from adb_shell.adb_device import AdbDeviceTcp

        s = self.settings
        timeout = timeout_s or s.connect_timeout_s
        signer = load_signer()
        if s.transport == "tcp":
            host, _, port = (s.address or "").rpartition(":")
            dev = AdbDeviceTcp(host, int(port), default_transport_timeout_s=timeout)
        else:
            try:
                from adb_shell.adb_device import AdbDeviceUsb

                dev = AdbDeviceUsb(serial=s.serial, default_transport_timeout_s=timeout)
            except Exception as exc:  # adb_shell raises InvalidTransportError when libusb1 is missing
                if "adb-shell[usb]" in str(exc):
                    raise EtfError(f"device {s.name!r}: USB needs the libusb1 package: "
                                   "pip install 'adb-shell[usb]'") from None
                raise EtfError(f"cannot open USB device {s.name!r} ({s.where}): {_reason(exc)}") from None
        asked_user: list[bool] = []
        try:
            # auth_callback fires when the phone does not know our key and shows its "Allow USB debugging?" prompt.
            dev.connect(rsa_keys=[signer], transport_timeout_s=timeout, auth_timeout_s=max(timeout, 30.0),
                        read_timeout_s=timeout, auth_callback=lambda _dev: asked_user.append(True))
        except Exception as exc:  # socket errors and every adb_shell exception mean "not reachable"
            try:
                dev.close()
            except Exception:
                pass
            hint = (" (the phone asked to allow this computer's key: tick 'Always allow', accept, and run again)"
                    if asked_user else "")
            raise EtfError(f"cannot reach device {s.name!r} at {s.where}: {_reason(exc)} "
                           f"after {timeout:g}s timeout{hint}") from None
        return dev

    def _shell(self, dev, command: str, timeout_s: float | None = None) -> str:
        t = timeout_s or self.settings.connect_timeout_s
        try:
            out = dev.shell(command, transport_timeout_s=t, read_timeout_s=t, timeout_s=max(t, 30.0), decode=False)
        except Exception as exc:
            raise _LinkLost(_reason(exc)) from exc
        return out.decode("utf-8", "replace")

    def _push(self, dev, local: Path, remote: str, mode: int) -> None:
        t = max(self.settings.connect_timeout_s, 10.0)
        from adb_shell.exceptions import PushFailedError

        try:
            dev.push(str(local), remote, st_mode=mode, mtime=int(time.time()), transport_timeout_s=t, read_timeout_s=t)
        except PushFailedError as exc:  # the phone answered FAIL: a device-side problem, the link is fine
            raise EtfError(f"device {self.name!r} refused to store {remote}: {_reason(exc)}") from None
        except Exception as exc:
            raise _LinkLost(f"push of {local.name} failed: {_reason(exc)}") from exc

    # -- benchmarking ----------------------------------------------------------------------------------------
    def _binary(self) -> Path:
        b = self.settings.benchmark_model
        if b is None:
            raise EtfError(f"device {self.name!r} has no benchmark_model path in its config; download TFLite's "
                           "android_aarch64 benchmark_model and set benchmark_model = \"PATH\" "
                           "(android_bench/README.md)")
        if not b.is_file():
            raise EtfError(f"benchmark_model binary for device {self.name!r} not found: {b}")
        return b

    def _benchmark_many(
        self, paths: list[Path], protocol: MeasureProtocol, progress: ProgressFn | None
    ) -> list[BenchStats]:
        for path in paths:
            if model_kind(path) == ONNX:
                raise EtfError(f"{path.name}: ONNX models run on the local device only (ONNX Runtime); "
                               f"device {self.name!r} runs .tflite through benchmark_model")
        binary = self._binary()
        dev = self._connect()
        work_dir = f"{self.settings.work_dir}/etf-{secrets.token_hex(4)}"
        results: list[BenchStats] = []
        failure: BaseException | None = None
        try:
            # Every path in a shell command is quoted: work_dir comes from the user's config.
            made = self._shell(dev, f"mkdir -p {shlex.quote(work_dir)} && echo __ETF_OK__")
            if "__ETF_OK__" not in made:
                raise EtfError(f"device {self.name!r}: cannot create {work_dir}: {made.strip()[:160]} "
                               "(set work_dir in the device config to a writable folder)")
            self._push(dev, binary, f"{work_dir}/{BINARY_NAME}", 0o100755)
            self._shell(dev, f"chmod 755 {shlex.quote(f'{work_dir}/{BINARY_NAME}')}")
            size = self.settings.batch_size
            for start in range(0, len(paths), size):
                if start and self.cooldown_for(protocol) > 0:  # the same pause separates batches
                    time.sleep(self.cooldown_for(protocol))
                batch = paths[start : start + size]
                results += self._run_batch(dev, work_dir, batch, start, len(paths), protocol, progress)
        except BaseException as exc:
            failure = exc
        cleaned = self._cleanup(dev, work_dir, link_ok=not isinstance(failure, _LinkLost))
        if failure is None:
            if not cleaned:
                raise EtfError(f"device {self.name!r}: benchmarks finished but {work_dir} could not be removed")
            return results
        left = ("pushed files were removed" if cleaned else
                f"could not reach the device again to remove {work_dir}; the on-device script deletes it "
                "when its session is cut")
        if isinstance(failure, _LinkLost):
            raise EtfError(f"lost the connection to device {self.name!r} at {self.settings.where} during the run "
                           f"({failure}); {left}") from None
        if isinstance(failure, EtfError):
            raise EtfError(f"{failure}; {left}") from None
        raise failure

    def _run_batch(self, dev, work_dir: str, batch: list[Path], offset: int, total: int,
                   protocol: MeasureProtocol, progress: ProgressFn | None) -> list[BenchStats]:
        names = [f"m{offset + i}.tflite" for i in range(len(batch))]
        for path, name in zip(batch, names):
            self._push(dev, path, f"{work_dir}/{name}", 0o100644)
        threads = self.threads_for(protocol)
        warmup = max(1, protocol.warmup)
        script = build_batch_script(work_dir, names, threads=threads, runs=protocol.runs, warmup=warmup,
                                    cpu_mask=self.settings.cpu_mask, cooldown_s=self.cooldown_for(protocol),
                                    extra_args=self.settings.extra_args, binary=BINARY_NAME)
        text = self._stream_script(dev, script, batch, offset, total, progress)
        sections, finished = split_batch_output(text)
        results = []
        for i, path in enumerate(batch):
            section = sections.get(i)
            if section is None or section.exit_code is None:
                raise _LinkLost(f"no complete output for {path.name}")
            results.append(self._stats_from_section(path, section, threads, warmup, protocol))
        if not finished:
            raise _LinkLost("the batch script did not run to its end")
        return results

    def _stream_script(self, dev, script: str, batch: list[Path], offset: int, total: int,
                       progress: ProgressFn | None) -> str:
        idle_timeout = max(self.settings.connect_timeout_s, 5.0 * HEARTBEAT_PERIOD_S)
        chunks: list[bytes] = []
        done = 0
        start = time.monotonic()
        try:
            for chunk in dev.streaming_shell(script, transport_timeout_s=idle_timeout,
                                             read_timeout_s=2.5 * HEARTBEAT_PERIOD_S,
                                             decode=False):
                chunks.append(chunk)
                if progress and b"__ETF_END__" in chunk:
                    finished = b"".join(chunks).count(b"__ETF_END__")
                    while done < min(finished, len(batch)):
                        done += 1
                        progress(offset + done, total, batch[done - 1].name)
                if time.monotonic() - start > self.settings.run_timeout_s:
                    raise _LinkLost(f"the batch ran longer than run_timeout_s={self.settings.run_timeout_s:g}")
        except _LinkLost:
            raise
        except Exception as exc:
            raise _LinkLost(_reason(exc)) from exc
        return b"".join(chunks).decode("utf-8", "replace")

    def _stats_from_section(self, path: Path, section: ModelSection, threads: int, warmup: int,
                            protocol: MeasureProtocol) -> BenchStats:
        if section.exit_code != 0:
            try:
                parse_benchmark_output(section.output)
                detail = f"exit code {section.exit_code}"
            except EtfError as exc:
                detail = str(exc)
            tail = "" if "benchmark_model" in detail else "benchmark_model: "
            raise EtfError(f"{path.name} on device {self.name!r}: {tail}{detail}")
        try:
            out = parse_benchmark_output(section.output)
        except EtfError as exc:
            raise EtfError(f"{path.name} on device {self.name!r}: {exc}") from None
        warnings: list[str] = []
        mean = out.inference_avg_ms
        median = out.inference_median_ms
        if median is None:
            median = mean
            warnings.append("this benchmark_model does not report a median; median_ms is the mean")
        std = out.inference_std_ms
        if std is None:
            std = 0.0
            warnings.append("this benchmark_model does not report a standard deviation")
        runs = out.count if out.count is not None else protocol.runs
        if out.count is not None and out.count != protocol.runs:
            warnings.append(f"benchmark_model ran {out.count} timed runs instead of {protocol.runs}")
        cv = std / mean if mean > 0 else 0.0
        note = cv_warning(cv)
        if note:
            warnings.append(note)
        return BenchStats(
            model=path.name, device=self.name, runtime="benchmark_model", threads=threads, runs=runs, warmup=warmup,
            median_ms=median, mean_ms=mean, std_ms=std,
            min_ms=out.inference_min_ms if out.inference_min_ms is not None else mean,
            max_ms=out.inference_max_ms if out.inference_max_ms is not None else mean,
            cv=cv, init_ms=out.init_ms, first_inference_ms=out.first_inference_ms, warmup_avg_ms=out.warmup_avg_ms,
            peak_memory_mb=out.peak_memory_mb if out.peak_memory_mb is not None else out.memory_overall_mb,
            model_bytes=path.stat().st_size, path=str(path.resolve()), cpu_mask=self.settings.cpu_mask,
            governor=parse_governors(section.governors), temperature_c=parse_temperatures(section.temperatures),
            warnings=warnings,
        )

    def _cleanup(self, dev, work_dir: str, link_ok: bool) -> bool:
        """Remove ``work_dir`` on the device; reconnect once if the link is gone. True when it is gone."""
        wd = shlex.quote(work_dir)
        command = f"rm -rf {wd}; [ -e {wd} ] && echo __ETF_LEFT__ || echo __ETF_CLEAN__"
        if link_ok:
            try:
                ok = "__ETF_CLEAN__" in self._shell(dev, command)
                dev.close()
                return ok
            except _LinkLost:
                pass
        try:
            dev.close()
        except Exception:
            pass
        try:
            dev2 = self._connect()
        except EtfError:
            return False
        try:
            return "__ETF_CLEAN__" in self._shell(dev2, command)
        except _LinkLost:
            return False
        finally:
            try:
                dev2.close()
            except Exception:
                pass

    # -- status ----------------------------------------------------------------------------------------------
    def check(self) -> DeviceStatus:
        try:
            dev = self._connect()
        except EtfError as exc:
            return DeviceStatus(self.name, self.kind, False, str(exc))
        try:
            out = self._shell(dev, 'echo "model=$(getprop ro.product.model 2>/dev/null)"; '
                                   'echo "android=$(getprop ro.build.version.release 2>/dev/null)"; echo __ETF_OK__')
        except _LinkLost as exc:
            return DeviceStatus(self.name, self.kind, False, f"connected but the shell failed: {exc}")
        finally:
            try:
                dev.close()
            except Exception:
                pass
        lines = [ln.strip() for ln in out.splitlines()]
        if "__ETF_OK__" not in lines:
            return DeviceStatus(self.name, self.kind, False, "connected but the shell gave no answer")
        props = dict(ln.split("=", 1) for ln in lines if ln.startswith(("model=", "android=")))
        model, release = props.get("model", ""), props.get("android", "")
        detail = (model or "unknown model") + (f", Android {release}" if release else "")
        if self.settings.benchmark_model is None or not self.settings.benchmark_model.is_file():
            detail += "; benchmark_model binary missing on this machine"
        return DeviceStatus(self.name, self.kind, True, detail, {"model": model, "android": release})

    def describe(self) -> dict[str, Any]:
        s = self.settings
        return {"name": s.name, "kind": self.kind, "transport": s.transport, "address": s.where,
                "cpu_mask": s.cpu_mask, "threads": s.threads,
                "benchmark_model": str(s.benchmark_model) if s.benchmark_model else None,
                "work_dir": s.work_dir, "cooldown_s": s.cooldown_s}
