"""Shared test helpers for the device layer: tiny real models (converted once per session) and a loopback phone."""
from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from tests.equipment.adb_peer import AdbPeer


@functools.lru_cache(maxsize=None)
def tiny_models() -> dict[str, Path]:
    """A small conv net at 64x64 converted once with litert_torch (.tflite) and torch.onnx (.onnx)."""
    import litert_torch
    import torch

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.head = torch.nn.Conv2d(8, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(torch.relu(self.conv(x)))

    torch.manual_seed(0)
    out = Path(tempfile.mkdtemp(prefix="etf-bench-models-"))
    atexit.register(shutil.rmtree, out, True)
    module, sample = Tiny().eval(), (torch.randn(1, 3, 64, 64),)
    litert_torch.convert(module, sample).export(str(out / "tiny.tflite"))
    torch.onnx.export(module, sample, str(out / "tiny.onnx"), dynamo=False)
    # A second, different model so multi-model tests see two distinct files.
    wide = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 4, 1)).eval()
    litert_torch.convert(wide, sample).export(str(out / "wide.tflite"))
    return {"tflite": out / "tiny.tflite", "onnx": out / "tiny.onnx", "wide": out / "wide.tflite"}


def write_loopback_config(path: Path, address: str, stub: Path, name: str = "loop", **extra: object) -> Path:
    """A devices TOML with one tcp device pointing at a loopback ADB peer."""
    settings: dict[str, object] = {"transport": "tcp", "address": address, "cpu_mask": "1", "threads": 1,
                                   "benchmark_model": str(stub), "cooldown_s": 0.1, "connect_timeout_s": 3}
    settings.update(extra)
    lines = [f"[devices.{name}]"] + [f"{key} = {value!r}".replace("'", '"') for key, value in settings.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def etf_public_key() -> Path:
    """etf's ADB public key (``$ETF_ADB_KEY.pub`` or the config one), made now if missing, as a phone would have
    been told to trust it."""
    from android_bench.adb_device import adb_key_path, load_signer

    load_signer()  # generates the key pair on first use
    return Path(str(adb_key_path()) + ".pub")


def loopback_phone(root: Path, **kwargs: object) -> AdbPeer:
    """A loopback ADB peer that lets in etf's key (and only the keys it is given)."""
    return AdbPeer(root, authorized_keys=[etf_public_key()], **kwargs)  # type: ignore[arg-type]
