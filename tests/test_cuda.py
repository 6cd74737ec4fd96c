"""The CUDA path: status and refusal everywhere; CudaConverter against a numpy reference on a GPU."""

from __future__ import annotations

import re
import threading
import time

import numpy as np
import pytest

from reactor_engine import _C
from reactor_engine.errors import CudaError, FrameError, InvalidArgumentError, ReactorError

STATUS = _C.cuda_status()
AVAILABLE = STATUS.startswith("available:")

# Odd on purpose: no size here is a multiple of a warp, a block or a vector width.
WIDTH, HEIGHT = 37, 53


def test_cuda_status_says_available_or_why_not():
    kind, _, detail = STATUS.partition(": ")
    assert kind in ("available", "unavailable")
    assert detail.strip()


def test_build_info_reports_cuda_consistently_with_status():
    if not hasattr(_C, "build_info"):
        pytest.skip("_C.build_info is not built yet")
    info = _C.build_info()
    assert info["cuda"] in ("ON", "OFF")
    built_without = STATUS.startswith("unavailable: built without CUDA")
    assert built_without == (info["cuda"] == "OFF")


def test_converter_refuses_with_the_reason_where_cuda_is_unavailable():
    if AVAILABLE:
        pytest.skip(f"CUDA is available here: {STATUS}")
    with pytest.raises(CudaError) as caught:
        _C.CudaConverter(64, 64)
    assert isinstance(caught.value, ReactorError)
    assert isinstance(caught.value, RuntimeError)
    assert STATUS.removeprefix("unavailable: ") in str(caught.value)


# --- on a GPU --------------------------------------------------------------------------------------


@pytest.fixture
def torch():
    if not AVAILABLE:
        pytest.skip(f"no usable CUDA device: {STATUS}")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch is installed without CUDA support")
    return torch


@pytest.fixture
def converter(torch):
    return _C.CudaConverter(64, 64)


def reference_rgb24(frame: np.ndarray, layout: str, value_range: str) -> np.ndarray:
    """The kernel's rule on the CPU: (x + offset) * scale in float32, NaN → 0, clamp, round half to even."""
    hwc = frame if layout == "hwc" else frame.transpose(1, 2, 0)
    if hwc.dtype == np.uint8:
        return np.ascontiguousarray(hwc)
    offset, scale = {"0_1": (0.0, 255.0), "-1_1": (1.0, 127.5)}[value_range]
    values = (hwc.astype(np.float32) + np.float32(offset)) * np.float32(scale)
    values = np.where(np.isnan(values), np.float32(0.0), values)
    return np.rint(np.clip(values, 0.0, 255.0)).astype(np.uint8)


def make_frame(dtype: str, layout: str, value_range: str) -> np.ndarray:
    rng = np.random.default_rng(20240601)
    shape = (HEIGHT, WIDTH, 3) if layout == "hwc" else (3, HEIGHT, WIDTH)
    if dtype == "uint8":
        return rng.integers(0, 256, size=shape, dtype=np.uint8)
    low = -1.0 if value_range == "-1_1" else 0.0
    frame = rng.uniform(low - 0.25, 1.25, size=shape).astype(dtype)
    # The ends, ±0, ±inf, NaN, and every byte value and the midpoints between them (ties).
    steps = np.arange(511, dtype=np.float64) / 2 / 255 * (1.0 - low) + low
    special = np.concatenate([[low, 1.0, 0.0, -0.0, np.inf, -np.inf, np.nan], steps]).astype(dtype)
    frame.reshape(-1)[: special.size] = special
    return frame


def stream_of(torch) -> int:
    return torch.cuda.current_stream().cuda_stream


@pytest.mark.gpu
@pytest.mark.parametrize(
    ("dtype", "layout", "value_range"),
    [
        ("uint8", "hwc", "0_255"),
        ("uint8", "chw", "0_255"),
        ("float32", "hwc", "0_1"),
        ("float32", "chw", "0_1"),
        ("float32", "hwc", "-1_1"),
        ("float32", "chw", "-1_1"),
        ("float16", "hwc", "0_1"),
        ("float16", "chw", "-1_1"),
    ],
)
def test_convert_matches_the_numpy_reference(torch, converter, dtype, layout, value_range):
    frame = make_frame(dtype, layout, value_range)
    device_frame = torch.from_numpy(frame).cuda()
    out = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    converter.convert(
        device_frame.data_ptr(), dtype, layout, value_range, WIDTH, HEIGHT, out, stream=stream_of(torch)
    )
    np.testing.assert_array_equal(out, reference_rgb24(frame, layout, value_range))


@pytest.mark.gpu
def test_convert_into_pinned_memory_matches_the_reference(torch, converter):
    frame = make_frame("float32", "chw", "-1_1")
    device_frame = torch.from_numpy(frame).cuda()
    out = torch.zeros((HEIGHT, WIDTH, 3), dtype=torch.uint8, pin_memory=True).numpy()
    converter.convert(
        device_frame.data_ptr(), "float32", "chw", "-1_1", WIDTH, HEIGHT, out, stream=stream_of(torch)
    )
    np.testing.assert_array_equal(out, reference_rgb24(frame, "chw", "-1_1"))


@pytest.mark.gpu
def test_convert_writes_packed_rows_at_the_start_of_a_larger_flat_buffer(torch, converter):
    frame = make_frame("uint8", "hwc", "0_255")
    device_frame = torch.from_numpy(frame).cuda()
    out = bytearray(b"\xab" * (64 * 64 * 3))
    converter.convert(
        device_frame.data_ptr(), "uint8", "hwc", "0_255", WIDTH, HEIGHT, out, stream=stream_of(torch)
    )
    size = WIDTH * HEIGHT * 3
    assert bytes(out[:size]) == frame.tobytes()
    assert out[size:] == b"\xab" * (len(out) - size)


@pytest.mark.gpu
def test_convert_waits_for_work_queued_on_the_producer_stream(torch, converter):
    if not hasattr(torch.cuda, "_sleep"):
        pytest.skip("this torch has no torch.cuda._sleep")
    frame = torch.zeros((HEIGHT, WIDTH, 3), dtype=torch.uint8, device="cuda")
    torch.cuda.synchronize()
    producer = torch.cuda.Stream()
    with torch.cuda.stream(producer):
        torch.cuda._sleep(200_000_000)  # ~0.1 s of GPU time before the frame is written
        frame.fill_(7)
    out = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    converter.convert(
        frame.data_ptr(), "uint8", "hwc", "0_255", WIDTH, HEIGHT, out, stream=producer.cuda_stream
    )
    assert (out == 7).all()


@pytest.mark.gpu
def test_convert_releases_the_gil_while_it_waits_for_the_gpu(torch, converter):
    if not hasattr(torch.cuda, "_sleep"):
        pytest.skip("this torch has no torch.cuda._sleep")
    frame = torch.zeros((HEIGHT, WIDTH, 3), dtype=torch.uint8, device="cuda")
    torch.cuda.synchronize()
    producer = torch.cuda.Stream()
    with torch.cuda.stream(producer):
        torch.cuda._sleep(1_000_000_000)  # ~0.5 s: convert waits for it behind the event
    out = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    started = threading.Event()
    returned_at: list[float] = []

    def convert() -> None:
        started.set()
        converter.convert(
            frame.data_ptr(), "uint8", "hwc", "0_255", WIDTH, HEIGHT, out, stream=producer.cuda_stream
        )
        returned_at.append(time.perf_counter())

    worker = threading.Thread(target=convert)
    worker.start()
    started.wait()
    time.sleep(0.02)  # needs the GIL back to return: only possible if convert released it
    ran_at = time.perf_counter()
    worker.join()
    assert ran_at < returned_at[0]


def bad_argument_cases() -> list:
    frame = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    cases = [
        ({"dtype": "float64"}, InvalidArgumentError, "'uint8', 'float16' or 'float32'"),
        ({"layout": "nhwc"}, InvalidArgumentError, "'hwc' or 'chw'"),
        ({"value_range": "0_2"}, InvalidArgumentError, "'0_255' (uint8), '0_1' or '-1_1'"),
        ({"value_range": "0_1"}, InvalidArgumentError, "uint8 takes '0_255'"),
        ({"dtype": "float32", "value_range": "0_255"}, InvalidArgumentError, "take '0_1' or '-1_1'"),
        ({"width": 65, "dst": bytearray(65 * HEIGHT * 3)}, FrameError, "up to 64x64"),
        ({"height": 0, "dst": bytearray(16)}, FrameError, "up to 64x64"),
        ({"dst": np.zeros((HEIGHT, WIDTH, 2), np.uint8)}, FrameError, f"needs ({HEIGHT}, {WIDTH}, 3)"),
        ({"dst": np.zeros((WIDTH, HEIGHT, 3), np.uint8)}, FrameError, f"needs ({HEIGHT}, {WIDTH}, 3)"),
        ({"dst": bytearray(WIDTH * HEIGHT * 3 - 1)}, FrameError, f"needs {WIDTH * HEIGHT * 3}"),
        ({"dst": bytes(WIDTH * HEIGHT * 3)}, FrameError, "not writable"),
        ({"dst": np.zeros((HEIGHT, WIDTH, 6), np.uint8)[:, :, ::2]}, FrameError, "C-contiguous"),
        ({"dst": np.zeros((HEIGHT, WIDTH, 3), np.float32)}, FrameError, "uint8"),
        ({"src_ptr": 0}, InvalidArgumentError, "null"),
        ({"src_ptr": frame.ctypes.data}, InvalidArgumentError, "host memory"),
    ]
    return [pytest.param(*case, id=f"{next(iter(case[0]))}-{index}") for index, case in enumerate(cases)]


@pytest.mark.gpu
@pytest.mark.parametrize(("override", "error", "fragment"), bad_argument_cases())
def test_convert_rejects_bad_arguments_naming_what_it_takes(torch, converter, override, error, fragment):
    device_frame = torch.zeros((HEIGHT, WIDTH, 3), dtype=torch.uint8, device="cuda")
    arguments = {
        "src_ptr": device_frame.data_ptr(),
        "dtype": "uint8",
        "layout": "hwc",
        "value_range": "0_255",
        "width": WIDTH,
        "height": HEIGHT,
        "dst": np.zeros((HEIGHT, WIDTH, 3), np.uint8),
        "stream": stream_of(torch),
    } | override
    with pytest.raises(error, match=re.escape(fragment)) as caught:
        converter.convert(**arguments)
    assert isinstance(caught.value, ValueError)


@pytest.mark.gpu
@pytest.mark.usefixtures("torch")
@pytest.mark.parametrize(("max_width", "max_height"), [(0, 64), (64, -1), (16385, 64)])
def test_converter_rejects_sizes_out_of_range(max_width, max_height):
    with pytest.raises(InvalidArgumentError, match=r"1\.\.16384"):
        _C.CudaConverter(max_width, max_height)


@pytest.mark.gpu
def test_converter_reports_its_size(converter):
    assert (converter.max_width, converter.max_height) == (64, 64)
