from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator

import pytest
import torch

from mnist_bench.training.start import seeded_model
from mnist_bench.training.timing import LATENCY_WARMUP, adam_config, latency_ms

CPU = torch.device("cpu")


def test_latency_on_a_stream_times_each_forward_with_its_events_and_waits_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """On CUDA a trial's latency is measured on its own lane's stream while other lanes train:
    each forward between two events recorded on that stream, one wait on the last event,
    never a device-wide sync (which would wait for every lane). Stand-ins show it on a CPU."""
    ticks = itertools.count()
    events: list[StandInEvent] = []
    waited: list[StandInEvent] = []
    entered: list[object] = []

    class StandInEvent:
        def __init__(self, *, enable_timing: bool = False) -> None:
            assert enable_timing
            self.stream: object = None
            self.tick = -1
            events.append(self)

        def record(self, stream: object) -> None:
            self.stream, self.tick = stream, next(ticks)

        def synchronize(self) -> None:
            waited.append(self)

        def elapsed_time(self, end: StandInEvent) -> float:
            return float(end.tick - self.tick)  # ms: two ticks between the pair of the middle forward

    @contextlib.contextmanager
    def on_stream(stream: object) -> Iterator[None]:
        entered.append(stream)
        yield

    def no_device_sync(device: object = None) -> None:
        raise AssertionError("a device-wide sync waits for every lane's stream")

    monkeypatch.setattr(torch.cuda, "Event", StandInEvent)
    monkeypatch.setattr(torch.cuda, "stream", on_stream)
    monkeypatch.setattr(torch.cuda, "synchronize", no_device_sync)
    forwards = []
    model = seeded_model(adam_config("784-16-10", 1), CPU)
    model.register_forward_hook(lambda *_: forwards.append(next(ticks)))
    stream = object()
    assert latency_ms(model, CPU, repeats=7, stream=stream) == 2.0  # start, forward, end: from the events
    assert entered == [stream] and len(events) == 14 and all(e.stream is stream for e in events)
    assert waited == [events[-1]]  # one wait, on the last event
    assert len(forwards) == LATENCY_WARMUP + 7


def test_latency_without_a_stream_times_on_the_host() -> None:
    model = seeded_model(adam_config("784-16-10", 1), CPU)
    assert latency_ms(model, CPU, repeats=3) > 0
