"""GPU telemetry: NVML readings when there is a GPU, a clear reason when there is none; never raises."""

from __future__ import annotations

import sys
import types

import pytest

from reactor_engine import telemetry


class FakeNVMLError(Exception):
    pass


def fake_nvml(init_error: str | None = None, devices: int = 1) -> types.ModuleType:
    nvml = types.ModuleType("pynvml")
    nvml.NVMLError = FakeNVMLError
    nvml.NVML_TEMPERATURE_GPU = 0

    def init():
        if init_error:
            raise FakeNVMLError(init_error)

    def power(handle):
        raise FakeNVMLError("Not Supported")

    nvml.nvmlInit = init
    nvml.nvmlDeviceGetCount = lambda: devices
    nvml.nvmlSystemGetDriverVersion = lambda: b"570.1"
    nvml.nvmlDeviceGetHandleByIndex = lambda i: i
    nvml.nvmlDeviceGetName = lambda h: "NVIDIA H200"
    nvml.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=2 * 2**30, total=141 * 2**30)
    nvml.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=37)
    nvml.nvmlDeviceGetTemperature = lambda h, sensor: 41
    nvml.nvmlDeviceGetPowerUsage = power
    return nvml


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(telemetry, "_init_result", None)
    monkeypatch.setattr(telemetry, "_nvml", None)
    return monkeypatch


def test_without_nvml_the_reason_says_no_nvidia_gpu(fresh):
    fresh.setitem(sys.modules, "pynvml", fake_nvml(init_error="NVML Shared Library Not Found"))
    reading = telemetry.gpu_telemetry()
    assert not reading.available and reading.devices == ()
    assert reading.unavailable.startswith("no NVIDIA GPU: ")
    assert "NVML Shared Library Not Found" in reading.describe()


def test_with_a_gpu_every_reading_is_reported_and_an_unsupported_one_is_noted(fresh):
    fresh.setitem(sys.modules, "pynvml", fake_nvml())
    reading = telemetry.gpu_telemetry()
    assert reading.available and reading.driver_version == "570.1"
    (gpu,) = reading.devices
    assert gpu.name == "NVIDIA H200" and gpu.memory_total_bytes == 141 * 2**30
    assert gpu.utilization_percent == 37.0 and gpu.temperature_c == 41.0 and gpu.power_w is None
    assert reading.errors == ("GPU 0 power: Not Supported",)
    assert "GPU 0: NVIDIA H200, 2.0/141.0 GiB, utilization 37%, 41 C" in reading.describe()
    assert reading.as_dict()["devices"][0]["index"] == 0


def test_zero_devices_is_reported_as_no_gpu(fresh):
    fresh.setitem(sys.modules, "pynvml", fake_nvml(devices=0))
    assert telemetry.gpu_telemetry().unavailable == "no NVIDIA GPU: NVML reports 0 devices"


def test_the_real_nvml_answers_without_raising():
    reading = telemetry.gpu_telemetry()
    assert reading.available or reading.unavailable.startswith("no NVIDIA GPU: ")
