"""Devices that run TFLite models and time them: this CPU through LiteRT, or Android phones over ADB.

Entry points: :func:`resolve_device` (a name from the devices TOML, or None for this CPU) returning a
:class:`Device` whose ``benchmark`` / ``benchmark_many`` give :class:`BenchStats`.
"""
from android_bench.device import Device, DeviceStatus
from android_bench.device_config import resolve_device
from android_bench.stats import BenchStats, MeasureProtocol

__all__ = ["BenchStats", "Device", "DeviceStatus", "MeasureProtocol", "resolve_device"]
