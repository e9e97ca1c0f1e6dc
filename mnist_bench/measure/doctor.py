"""Does this machine train right, and how fast? One short run of checks, before real work.

On a GPU the fast paths (graphed steps, trainings in flight, resuming a graphed run) are
checked against the plain eager path they must reproduce, and timed; on a CPU the
graphed runner's static step, the very step a graph captures, stands in for the graph.
The trainings compared are built and trained as the search builds and trains its trials:
on lanes, in two phases (``lanes.training_build``), alone or side by side.
Each check returns plain data; ``mnist-bench doctor`` renders it and exits 1 on a failure.
The data is synthetic and seeded (no MNIST files needed), sized so the whole run takes
well under a minute on two CPU cores.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from mnist_bench.config import PRECISIONS, Runtime, TrainConfig
from mnist_bench.data import DeviceData
from mnist_bench.errors import one_line
from mnist_bench.measure.bench import matmul_flops, trainer_throughput
from mnist_bench.model import ModelConfig
from mnist_bench.training.device import environment, give_back_memory
from mnist_bench.training.lanes import Build, MakeTraining, Slot, run_in_flight, training_build
from mnist_bench.training.start import HostStart, set_matmul_precision
from mnist_bench.training.trainer import Training

N_TRAIN = 1_020  # batch 32 leaves a partial last batch of 28, which graphed runs step eagerly
N_EVAL = 256
# What a step can hold: momentum under one-cycle (which cycles it), max-norm, Adam, AdamW,
# weight decay, schedules, dropout, label smoothing, augmentation.
CONFIGS = {
    "SGD momentum + one-cycle + max-norm": TrainConfig(
        ModelConfig((128, 64)), "sgd", 0.05, momentum=0.9, batch_size=32, epochs=2, seed=1,
        schedule="onecycle", max_norm=2.0,
    ),
    "Adam": TrainConfig(ModelConfig((128,)), "adam", 1e-3, batch_size=32, epochs=2, seed=2),
    "AdamW + cosine + dropout + label smoothing": TrainConfig(
        ModelConfig((128, 64), dropout=0.2), "adamw", 2e-3, batch_size=32, epochs=2, seed=3,
        weight_decay=0.01, schedule="cosine", label_smoothing=0.1,
    ),
    "SGD + weight decay + elastic": TrainConfig(
        ModelConfig((128,)), "sgd", 0.1, momentum=0.5, batch_size=32, epochs=2, seed=4,
        weight_decay=1e-4, schedule="cosine", augment="elastic",
    ),
}  # fmt: skip
# What the graphed-against-eager check trains besides: a net wide and deep enough that its
# products take cuBLAS's split-K paths (their workspace is the state lanes share), and a
# batch that divides the data exactly (no partial last batch: every step is a replay).
CHECK_CONFIGS = {
    **CONFIGS,
    "split-K: 784-2048-2048-10 at batch 256": TrainConfig(
        ModelConfig((2048, 2048)), "sgd", 0.01, momentum=0.9, batch_size=256, epochs=1, seed=5, schedule="cosine",
    ),
    "batch 60, which divides the 1,020 images exactly": TrainConfig(
        ModelConfig((64,)), "adamw", 1e-3, batch_size=60, epochs=2, seed=6, weight_decay=0.01,
    ),
}  # fmt: skip
# Graphed and eager steps are one step function making one update: equal bitwise. Only
# what is not one step (the speed check's figures) is compared within a tolerance.
RTOL, ATOL = 1e-4, 1e-5
SPEED = TrainConfig(ModelConfig((128,)), "adam", 1e-3, batch_size=64, epochs=1)  # 784-128-10 at batch 64
# A batch of 256 through a 2048-wide layer: the matmuls that dominate the frontier spaces' wide nets.
PRECISION_ROWS, PRECISION_WIDTH = 256, 2048
MEMORY_TRAININGS, MEMORY_IN_FLIGHT = 40, 8
MEMORY_SLACK_MB = 64.0  # at most this growth between 8 and 40 trainings (a cuBLAS workspace is 32 MiB on Hopper)


@dataclass(frozen=True)
class Check:
    name: str
    result: str  # what was found, in words and figures
    ok: bool | None  # None: a figure to read, not a pass or fail


@dataclass(frozen=True)
class DoctorReport:
    environment: dict[str, str | int | None]
    steps: str  # what stands for "graphed" here: "CUDA graphs", or "static step (no graph on a CPU)"
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(check.ok is not False for check in self.checks)


def synthetic_data(device: torch.device, *, n_train: int = N_TRAIN, n_eval: int = N_EVAL) -> DeviceData:
    """Seeded stand-in digits, normalized like MNIST: enough to train on and compare."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n_train + n_eval, 784, generator=generator)
    y = (x[:, :10].argmax(1) + torch.randint(0, 2, (n_train + n_eval,), generator=generator)) % 10  # learnable
    x, y = x.to(device), y.to(device)
    return DeviceData(x[:n_train], y[:n_train], x[n_train:], y[n_train:])


def fast_runtime(device: torch.device) -> Runtime:
    """The runtime whose steps are graphed on CUDA; on a CPU, the static step stands in."""
    return Runtime(graphs=True, static_on_cpu=device.type != "cuda")


def trained_in_lanes(
    builds: Sequence[Build], device: torch.device, *, k: int = 1, epochs: int | None = None
) -> list[Training]:
    """``builds`` trained as a search trains its trials: each built on a lane in two phases
    (``lanes.Build``: its host start, then its device part in the exclusive build), ``k`` in
    flight (1: one after the other, each alone), to its end or its first ``epochs``. The
    trainings, in order, their graphs released; a training that fails raises."""
    todo = list(enumerate(builds))
    trained: dict[int, Training] = {}

    def start(_lane: int) -> tuple[int, MakeTraining] | None:
        return todo.pop(0) if todo else None

    def judge(slot: Slot[int]) -> bool:
        if slot.error is not None:
            raise RuntimeError(slot.error)
        assert slot.training is not None
        finished = slot.training.done or (epochs is not None and slot.training.epoch >= epochs)
        if finished:
            trained[slot.tag] = slot.training
        return finished

    run_in_flight(k, start, judge, lambda slot, reason: None, device=device)
    return [trained[i] for i in range(len(builds))]


def resuming(build: Build, path: Path) -> Build:
    """``build`` with its training resumed from the state at ``path`` as it is built, as a
    retrain resumes its seeds."""

    def on_device(host: HostStart, stream: torch.cuda.Stream | None) -> Training:
        training = build.device(host, stream)
        training.resume(path)
        return training

    return Build(build.host, on_device)


def compare(a: Training, b: Training, *, bitwise: bool) -> tuple[bool, str]:
    """Whether ``a`` and ``b`` trained the same (losses and weights), and how close they came."""
    pairs = [(torch.tensor(a.train_loss), torch.tensor(b.train_loss))]
    pairs += [
        (p.detach().cpu(), q.detach().cpu()) for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True)
    ]
    if all(torch.equal(p, q) for p, q in pairs):
        return True, "equal bitwise"
    worst = max(float((p - q).abs().max()) for p, q in pairs)
    if bitwise:
        return False, f"differ: largest difference {worst:.2e} (must be bitwise equal)"
    close = all(torch.allclose(p, q, rtol=RTOL, atol=ATOL) for p, q in pairs)
    return close, f"largest difference {worst:.2e} ({'within' if close else 'outside'} rtol {RTOL:g}, atol {ATOL:g})"


def trainable_precisions(device: torch.device) -> list[str]:
    """Every ``--precision`` a command can train in on ``device``."""
    found = []
    for precision in PRECISIONS:
        try:
            Runtime(precision=precision).check(device)
        except ValueError:
            continue  # tf32 off CUDA, bf16 on an old GPU
        found.append(precision)
    return found


def check_graphed_against_eager(
    data: DeviceData,
    steps: str,
    *,
    precisions: list[str] | None = None,
    fast_configs: dict[str, TrainConfig] | None = None,
) -> list[Check]:
    """Each kind of step (``CHECK_CONFIGS``) graphed against eager, bitwise, in each precision
    (default: every one the device trains in). ``fast_configs`` replaces what the fast side
    trains (the self-check's rehearsal of a failure)."""
    checks = []
    fast_configs = fast_configs or CHECK_CONFIGS
    try:
        for precision in precisions or trainable_precisions(data.device):
            eager_runtime = Runtime(graphs=False, precision=precision)
            fast_runtime_ = replace(fast_runtime(data.device), precision=precision)
            eager = trained_in_lanes(
                [training_build(config, data, runtime=eager_runtime) for config in CHECK_CONFIGS.values()], data.device
            )
            fast = trained_in_lanes(
                [training_build(fast_configs[name], data, runtime=fast_runtime_) for name in CHECK_CONFIGS], data.device
            )
            for name, slow, quick in zip(CHECK_CONFIGS, eager, fast, strict=True):
                label = f"{steps} = eager, {precision}: {name}"
                if not quick.graphed:
                    checks.append(Check(label, f"not graphed: {quick.result().eager_reason}", False))
                    continue
                ok, found = compare(slow, quick, bitwise=True)
                checks.append(Check(label, found, ok))
    finally:
        set_matmul_precision(Runtime(), data.device)  # tf32 is process-wide: back to fp32
    return checks


def check_in_flight(data: DeviceData, *, runtime: Runtime | None = None, perturb: bool = False) -> Check:
    """``CHECK_CONFIGS``' trainings side by side, on lanes of their own (threads, and streams
    on CUDA), each against itself trained alone: bitwise. ``perturb`` trains one of them on another
    seed in flight (the self-check's rehearsal of a failure)."""
    configs = list(CHECK_CONFIGS.values())  # the split-K net among them: its workspace is what lanes share
    runtime = runtime or fast_runtime(data.device)
    alone = trained_in_lanes([training_build(c, data, runtime=runtime) for c in configs], data.device)
    flown = [replace(c, seed=c.seed + 100) if perturb and i == 0 else c for i, c in enumerate(configs)]
    together = trained_in_lanes([training_build(c, data, runtime=runtime) for c in flown], data.device, k=len(configs))
    results = [compare(a, b, bitwise=True) for a, b in zip(alone, together, strict=True)]
    bad = [f"{name}: {found}" for (ok, found), name in zip(results, CHECK_CONFIGS, strict=True) if not ok]
    found = "; ".join(bad) if bad else "each equal bitwise to itself trained alone"
    return Check(f"{len(configs)} trainings in flight = each alone", found, not bad)


def check_resume(data: DeviceData, steps: str) -> Check:
    config = replace(CONFIGS["SGD momentum + one-cycle + max-norm"], epochs=3)
    runtime = fast_runtime(data.device)
    (whole,) = trained_in_lanes([training_build(config, data, runtime=runtime)], data.device)
    (first,) = trained_in_lanes([training_build(config, data, runtime=runtime)], data.device, epochs=1)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "state.pt"
        first.save_state(path)
        build = resuming(training_build(config, data, runtime=runtime), path)
        (resumed,) = trained_in_lanes([build], data.device)
    ok, found = compare(whole, resumed, bitwise=True)
    return Check(f"{steps}: stopped after epoch 1 and resumed = unbroken", found, ok)


def check_speed(data: DeviceData, steps: str) -> list[Check]:
    kw = {"steps": 200, "repeats": 5, "warmup": 40}
    eager = trainer_throughput(SPEED, data, Runtime(graphs=False), **kw)
    fast = trainer_throughput(SPEED, data, fast_runtime(data.device), **kw)
    rate = {name: row["samples_per_s"] / SPEED.batch_size for name, row in (("eager", eager), ("fast", fast))}
    return [
        Check("steps/s, 784-128-10 batch 64, eager", f"{rate['eager']:,.0f}", None),
        Check(f"steps/s, 784-128-10 batch 64, {steps}", f"{rate['fast']:,.0f}", None),
        Check(f"{steps} / eager", f"{rate['fast'] / rate['eager']:.2f}x", None),
    ]


def precision_rates(device: torch.device) -> dict[str, float]:
    """Matmul FLOP/s at a wide net's shape in each precision ``device`` can train in."""
    rates = {}
    try:
        for precision in PRECISIONS:
            runtime = Runtime(precision=precision)
            try:
                runtime.check(device)
            except ValueError:
                continue  # tf32 off CUDA, bf16 on an old GPU
            set_matmul_precision(runtime, device)
            rates[precision] = matmul_flops(
                device,
                size=PRECISION_WIDTH,
                rows=PRECISION_ROWS,
                repeats=5,
                inner=1 if device.type == "cpu" else 50,
                dtype=torch.bfloat16 if precision == "bf16" else torch.float32,
            )
    finally:
        set_matmul_precision(Runtime(), device)
    return rates


def check_precision(device: torch.device) -> list[Check]:
    """Which ``--precision`` trains a wide net fastest here. bf16 pays only where the hardware
    multiplies bfloat16 faster than float32: GPUs with tensor cores, CPUs whose oneDNN kernels
    use AMX or fast AVX-512 BF16. Elsewhere bf16 is slower, and a command that asks for it
    (the frontier pipelines do) costs time instead of saving it."""
    rates = precision_rates(device)
    shape = f"{PRECISION_ROWS}x{PRECISION_WIDTH} @ {PRECISION_WIDTH}x{PRECISION_WIDTH}"
    checks = [Check(f"matmul GFLOP/s, {p}, {shape}", f"{rate / 1e9:,.0f}", None) for p, rate in rates.items()]
    fastest = max(rates, key=lambda precision: rates[precision])
    found = ", ".join(f"{p} {rates[p] / rates['fp32']:.2f}x" for p in rates if p != "fp32")
    checks.append(Check("against fp32", f"{found}: --precision {fastest} is fastest here", None))
    return checks


STATM = "/proc/self/statm"  # Linux's: this process's resident pages now, its second field


def used_memory(device: torch.device) -> tuple[float, str] | None:
    """Memory this process holds, in MB, and what that figure is; None where the system
    cannot tell. On a GPU, what the caching allocator holds (graph pools, tensors, and the
    cuBLAS workspaces it hands out), not the driver's device-wide figure, which another
    process on a shared GPU would move. On a CPU, the resident memory now where Linux's
    /proc says it, else the peak resident memory so far (getrusage, macOS and the BSDs:
    growth of the peak still shows memory that piles up), else None (Windows)."""
    if device.type == "cuda":
        return torch.cuda.memory_reserved(device) / 2**20, "reserved"
    try:
        with open(STATM) as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, "resident"
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    peak = peak_resident_bytes()
    return None if peak is None else (peak / 2**20, "peak resident")


def peak_resident_bytes() -> int | None:
    """This process's peak resident memory, where the system keeps it (not on Windows)."""
    try:
        import resource  # noqa: PLC0415  (Unix only)
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def graph_memory_mb(data: DeviceData, runtime: Runtime, config: TrainConfig) -> float:
    """What one training's captured graph holds on the device (0 on a CPU: no graph)."""
    if data.device.type != "cuda":
        return 0.0
    training = Training(config, data, runtime=runtime, score_epochs=False)
    training.run_epoch()
    give_back_memory(data.device)
    held = torch.cuda.memory_reserved(data.device)
    training.release()  # what this gives back is the graph's pool alone (not the stream's workspaces)
    give_back_memory(data.device)
    return max(0.0, (held - torch.cuda.memory_reserved(data.device)) / 2**20)


def check_memory(data: DeviceData) -> Check:
    """Memory after 40 short trainings with 8 in flight, against after the first 8: what
    trainings leave behind (graphs, workspaces, streams) must not pile up. The margin is
    less than half of what one graph left behind by each of the 32 later trainings would
    add, so a leak of one graph per trial fails the check, not by a hair. Where the system
    reports no memory of a process, the check is a figure not measured, not a failure."""
    name = f"memory, {MEMORY_TRAININGS} trainings {MEMORY_IN_FLIGHT} in flight"
    gauge = used_memory(data.device)
    if gauge is None:
        return Check(name, "not measured: this system reports no memory of a process", None)
    what = gauge[1]
    runtime = fast_runtime(data.device)
    config = replace(SPEED, epochs=1)
    per_graph = graph_memory_mb(data, runtime, config)
    leaked = (MEMORY_TRAININGS - MEMORY_IN_FLIGHT) * per_graph
    slack = min(MEMORY_SLACK_MB, leaked / 2) if leaked else MEMORY_SLACK_MB
    todo = list(range(MEMORY_TRAININGS))
    finished = 0
    after: dict[int, float] = {}

    def start(_lane: int) -> tuple[int, MakeTraining] | None:
        if not todo:
            return None
        seed = todo.pop(0)
        return seed, training_build(replace(config, seed=seed), data, runtime=runtime, score_epochs=False)

    def judge(slot: Slot[int]) -> bool:
        nonlocal finished
        if slot.error is not None:
            raise RuntimeError(slot.error)
        finished += 1
        if finished in (MEMORY_IN_FLIGHT, MEMORY_TRAININGS):
            reading = used_memory(data.device)
            after[finished] = float("nan") if reading is None else reading[0]
        return True

    run_in_flight(MEMORY_IN_FLIGHT, start, judge, lambda slot, reason: None, device=data.device)
    growth = after[MEMORY_TRAININGS] - after[MEMORY_IN_FLIGHT]
    found = (
        f"{what} {after[MEMORY_IN_FLIGHT]:,.0f} MB after {MEMORY_IN_FLIGHT}, {after[MEMORY_TRAININGS]:,.0f} MB after "
        f"{MEMORY_TRAININGS} ({growth:+,.1f} MB; at most +{slack:.1f}"
        + (f", where a graph leaked per training would add {leaked:,.0f})" if leaked else ")")
    )
    return Check(name, found, growth <= slack)


def run_doctor(device: torch.device, *, progress: Callable[[str], None] | None = None) -> DoctorReport:
    """Every check on ``device``; a check that raises is a failed check, never the end of the run."""
    say = progress or (lambda _line: None)
    data = synthetic_data(device)
    steps = "graphed" if device.type == "cuda" else "static step"
    checks: list[Check] = []
    parts: list[tuple[str, Callable[[], list[Check]]]] = [
        ("graphed against eager", lambda: check_graphed_against_eager(data, steps)),
        ("in flight against alone", lambda: [check_in_flight(data)]),
        ("resume", lambda: [check_resume(data, steps)]),
        ("speed", lambda: check_speed(data, steps)),
        ("precision", lambda: check_precision(device)),
        ("memory", lambda: [check_memory(data)]),
    ]
    for name, part in parts:
        say(name)
        try:
            checks += part()
        except Exception as exc:  # a broken path is what doctor is for: report it, go on
            checks.append(Check(name, f"raised {one_line(exc)}", False))
    what = "CUDA graphs" if device.type == "cuda" else "static step (no graph on a CPU; it stands in for one)"
    return DoctorReport(environment(device), what, tuple(checks))
