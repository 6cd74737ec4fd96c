"""GPU telemetry through NVML (nvidia-ml-py): memory, utilization, temperature, power per device.

Where NVML cannot be used (no driver, no device, a container without the library) every reading
says so once, as ``"no NVIDIA GPU: <reason>"``, and callers carry on without GPU numbers.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["GpuDevice", "GpuTelemetry", "gpu_telemetry"]


@dataclass(frozen=True)
class GpuDevice:
    """One NVIDIA device at the moment it was read. A reading NVML refused is ``None``."""

    index: int
    name: str
    memory_used_bytes: int | None
    memory_total_bytes: int | None
    utilization_percent: float | None
    temperature_c: float | None
    power_w: float | None


@dataclass(frozen=True)
class GpuTelemetry:
    """The devices NVML sees, or the reason there are none (``unavailable``)."""

    devices: tuple[GpuDevice, ...] = ()
    driver_version: str | None = None
    unavailable: str | None = None  # "no NVIDIA GPU: <reason>" when NVML gave no devices
    errors: tuple[str, ...] = field(default=())

    @property
    def available(self) -> bool:
        return self.unavailable is None

    def describe(self) -> str:
        """One line per device, or the reason there is none."""
        if self.unavailable is not None:
            return self.unavailable
        lines = []
        for gpu in self.devices:
            memory = (
                f"{gpu.memory_used_bytes / 2**30:.1f}/{gpu.memory_total_bytes / 2**30:.1f} GiB"
                if gpu.memory_used_bytes is not None and gpu.memory_total_bytes is not None
                else "memory n/a"
            )
            util = f"{gpu.utilization_percent:.0f}%" if gpu.utilization_percent is not None else "n/a"
            temp = f"{gpu.temperature_c:.0f} C" if gpu.temperature_c is not None else "n/a"
            lines.append(f"GPU {gpu.index}: {gpu.name}, {memory}, utilization {util}, {temp}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "available": self.available,
            "unavailable": self.unavailable,
            "driver_version": self.driver_version,
            "devices": [asdict(gpu) for gpu in self.devices],
            "errors": list(self.errors),
        }


# NVML is initialised once per process, on first use, under this lock (readers may be any thread).
_lock = threading.Lock()
_init_result: str | None = None  # "" once initialised; else why it failed
_nvml: Any = None


def _initialise() -> str:
    global _init_result, _nvml
    if _init_result is not None:
        return _init_result
    try:
        import pynvml  # type: ignore[import-untyped]  # nvidia-ml-py ships no stubs
    except ImportError as exc:
        _init_result = f"no NVIDIA GPU: nvidia-ml-py is not installed ({exc})"
        return _init_result
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        _init_result = f"no NVIDIA GPU: NVML could not start ({exc}; is the NVIDIA driver installed?)"
        return _init_result
    except OSError as exc:
        _init_result = f"no NVIDIA GPU: NVML could not be loaded ({exc})"
        return _init_result
    _nvml = pynvml
    _init_result = ""
    return _init_result


def gpu_telemetry() -> GpuTelemetry:
    """Read every NVIDIA device now; never raises."""
    with _lock:
        reason = _initialise()
        if reason:
            return GpuTelemetry(unavailable=reason)
        nvml = _nvml
        errors: list[str] = []
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except nvml.NVMLError as exc:
            return GpuTelemetry(unavailable=f"no NVIDIA GPU: NVML cannot count devices ({exc})")
        if count == 0:
            return GpuTelemetry(unavailable="no NVIDIA GPU: NVML reports 0 devices")
        driver = _read(errors, "driver version", lambda: _text(nvml.nvmlSystemGetDriverVersion()))
        devices = tuple(_device(nvml, index, errors) for index in range(count))
        return GpuTelemetry(devices=devices, driver_version=driver, errors=tuple(errors))


def _device(nvml: Any, index: int, errors: list[str]) -> GpuDevice:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    memory = _read(errors, f"GPU {index} memory", lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
    util = _read(errors, f"GPU {index} utilization", lambda: nvml.nvmlDeviceGetUtilizationRates(handle))
    temp = _read(
        errors,
        f"GPU {index} temperature",
        lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU),
    )
    power = _read(errors, f"GPU {index} power", lambda: nvml.nvmlDeviceGetPowerUsage(handle))
    return GpuDevice(
        index=index,
        name=_read(errors, f"GPU {index} name", lambda: _text(nvml.nvmlDeviceGetName(handle))) or "unknown",
        memory_used_bytes=int(memory.used) if memory is not None else None,
        memory_total_bytes=int(memory.total) if memory is not None else None,
        utilization_percent=float(util.gpu) if util is not None else None,
        temperature_c=float(temp) if temp is not None else None,
        power_w=float(power) / 1000.0 if power is not None else None,
    )


def _read(errors: list[str], what: str, read: Any) -> Any:
    try:
        return read()
    except _nvml.NVMLError as exc:  # e.g. NOT_SUPPORTED on some boards; the other readings still count
        errors.append(f"{what}: {exc}")
        return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
