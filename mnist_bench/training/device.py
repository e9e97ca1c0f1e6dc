"""Which device to train on, and the facts about it that belong beside every result."""

from __future__ import annotations

import os
import platform

import torch

from mnist_bench.errors import MnistBenchError, UsageError, one_line


def resolve_device(spec: str = "auto") -> torch.device:
    """'auto' (CUDA when present, else CPU), 'cpu', 'cuda' or 'cuda:N'."""
    spec = spec.strip().lower()
    if spec == "auto":  # indexed: torch.cuda.set_device refuses a CUDA device without one
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UsageError(f"device {spec!r} is not one of auto, cpu, cuda, cuda:N") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise UsageError(f"device {spec!r} is not supported: use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise MnistBenchError(f"device {spec!r} asked for, but this torch sees no CUDA GPU")
    index = device.index or 0
    if index >= torch.cuda.device_count():
        raise MnistBenchError(f"device {spec!r} does not exist: {torch.cuda.device_count()} CUDA device(s) visible")
    return torch.device("cuda", index)


def sync(device: torch.device) -> None:
    """Wait for all ``device`` has queued (every stream's): a host-device sync point."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model where Linux tells it: two x86_64 CPUs of two cores
    can differ by 2.7x in bf16 (AMD's Zen 4 against an Intel Xeon without AMX)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model() or platform.processor() or platform.machine() or "cpu"


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str | None:
    try:
        with open(cpuinfo) as lines:
            for line in lines:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass  # not Linux
    return None


def environment(device: torch.device) -> dict[str, str | int | None]:
    """Device, versions and CPU count: stored beside every figure we report."""
    return {
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }


def select_device(device: torch.device) -> torch.device:
    """Make ``device`` this thread's current CUDA device; nothing to do on a CPU.

    CUDA's current device is per thread and starts at 0. A worker process or lane thread
    on ``cuda:N`` that skipped this would make a context on device 0 and find there what
    torch does "on the current device" (a graph capture's synchronize and cache release,
    the state of a registered generator).
    """
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


# CUDA's sticky errors: after one, the process's CUDA context is unusable, and every later
# call on it fails. torch (2.8+) raises them as torch.AcceleratorError with the CUDA error
# code; older builds and other paths as a RuntimeError whose message is CUDA's wording.
# An out-of-memory error is not one: the next trial may fit.
STICKY_CUDA_CODES = frozenset(
    {
        214,  # cudaErrorECCUncorrectable
        220,  # cudaErrorNvlinkUncorrectable
        700,  # cudaErrorIllegalAddress
        702,  # cudaErrorLaunchTimeout
        710,  # cudaErrorAssert
        714,  # cudaErrorHardwareStackError
        715,  # cudaErrorIllegalInstruction
        716,  # cudaErrorMisalignedAddress
        717,  # cudaErrorInvalidAddressSpace
        718,  # cudaErrorInvalidPc
        719,  # cudaErrorLaunchFailure
    }
)
STICKY_CUDA_ERRORS = (
    "an illegal memory access was encountered",
    "unspecified launch failure",
    "device-side assert triggered",
    "an illegal instruction was encountered",
    "misaligned address",
    "operation not supported on global/shared address space",
    "invalid program counter",
    "hardware stack error",
    "the launch timed out and was terminated",
    "uncorrectable ecc error encountered",
    "uncorrectable nvlink error",
)
# Not sticky, though it reads like it: torch before 2.12 leaves its generators marked as
# capturing after a failed capture, and a live graph's next replay raises "Offset increment
# outside graph capture". The device is healthy; the process's graphs are what cannot be
# trusted, and after a failed capture no graph replays again (``capture_broken``).


class DeviceFault(MnistBenchError):
    """The device's context is poisoned: nothing more can run on it in this process."""


def device_fault(exc: BaseException, device: torch.device | None = None) -> str | None:
    """The one-line fault if ``exc`` is a sticky device error, else None (the next training may run).

    By CUDA's error code where torch gives one, else by its wording; on a CUDA ``device``,
    an error of any other kind (a cuBLAS failure after a fault, say) is checked by asking the
    device once more: a poisoned context answers with the sticky error.
    """
    text = one_line(exc)
    if getattr(exc, "error_code", None) in STICKY_CUDA_CODES:
        return text
    if any(sticky in str(exc).lower() for sticky in STICKY_CUDA_ERRORS):
        return text
    if device is not None and device.type == "cuda":
        try:
            torch.cuda.synchronize(device)
        except Exception as probe:  # the context answers with its sticky error
            return device_fault(probe) or f"{text} (then: {one_line(probe)})"
    return None


def fault_message(device: torch.device, fault: str, in_flight: int) -> str:
    """What the user reads when a device fault ends a command: one line."""
    return (
        f"{device} faulted ({fault}); its CUDA context cannot run anything more, so the command stops here "
        f"({in_flight} training(s) in flight failed with this reason, finished work kept): "
        "run the same command again to resume, and `mnist-bench doctor` to check the device"
    )


# A fact about this process's CUDA state, not about any training: a capture whose end
# failed. torch (up to 2.11) then skips its own bookkeeping: the generators stay marked as
# capturing (before 2.12) and the allocator keeps routing to the capture's pool, so no
# later capture can be trusted, no graph may replay, and the cache may not be emptied
# (2.2-2.7 assert there: ``captures_underway.empty()``). Appended to, never cleared.
_BROKEN_CAPTURE: list[str] = []


def mark_capture_broken(reason: str) -> None:
    _BROKEN_CAPTURE.append(reason)


def capture_broken() -> str | None:
    """Why this process's graphs can no longer be trusted (the first failed capture), or None."""
    return _BROKEN_CAPTURE[0] if _BROKEN_CAPTURE else None


def give_back_memory(device: torch.device) -> None:
    """Return cached, unused device memory (released graphs' pools) to the driver, where safe.

    Only where no training on the device is capturing a graph: emptying the cache during
    another thread's capture would free what that capture is recording into. Callers call
    it between rounds of trainings in flight, or after a training run alone. Never after a
    failed capture (the allocator may still believe it under way): the cache is then kept,
    and never is giving memory back a reason for a training to fail.
    """
    if device.type != "cuda" or capture_broken() is not None:
        return
    try:
        with torch.cuda.device(device):
            torch.cuda.empty_cache()
    except Exception as exc:  # an allocator that refuses now will refuse again: keep the cache
        mark_capture_broken(f"emptying the cache failed: {one_line(exc)}")
