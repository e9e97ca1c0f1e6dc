"""Trust after proof: the fast paths run on a CUDA device only once they have proved themselves there.

Graphed steps and trainings in flight are right by construction and tested on the CPU,
where the static step stands in for the graph and lanes run on threads. What no CPU test
can show (a driver, a GPU model, a torch build that captures differently) is checked on
the machine itself, before a command first trains that way: a short run of doctor's
comparisons (graphed = eager on each kind of step; K in flight = each alone, bitwise),
whose trainings are built as a command's are (on lanes, in two phases), in
a child process, so that a device fault there cannot poison the command's own CUDA
context, under a time limit, so that a hang cannot stall it.

The verdict is kept in the user's cache folder, keyed by GPU model, driver, CUDA, cuBLAS
and torch versions, the settings that change how CUDA allocates and multiplies
(``CUDA_SETTINGS``), and a digest of the package's own sources: it runs once per machine
and code, so a checkout whose step changed is checked again, pass or fail. The child
checks every precision the device trains in, a net wide enough for cuBLAS's split-K
paths, a batch that divides the data exactly, and a resume. A pass leaves the fast
paths as designed; a failure, a crash or a hang turns off what failed (graphed steps,
trainings in flight, or both), and the command says so in one line. ``--steps graphed``
or ``--steps eager`` overrides; ``mnist-bench doctor`` writes the same verdict.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from mnist_bench import __version__
from mnist_bench.config import Runtime, steps_spec
from mnist_bench.errors import LINE_CHARS, one_line
from mnist_bench.training.device import device_name

if TYPE_CHECKING:
    from mnist_bench.measure.doctor import Check

CHECK_TIMEOUT_S = 180.0  # a healthy GPU checks in seconds; CUDA's first start can take a minute
# A check that crashed or hung may have met a passing trouble (a GPU busy with another job, a
# first start compiling kernels): its verdict is kept this long, then the check runs again.
INCONCLUSIVE_KEEP_S = 24 * 3600.0
# Environment settings under which the same code captures or multiplies differently (with
# caching off a capture must fail): part of what a verdict holds for.
CUDA_SETTINGS = (
    "PYTORCH_CUDA_ALLOC_CONF",
    "PYTORCH_NO_CUDA_MEMORY_CACHING",
    "CUBLAS_WORKSPACE_CONFIG",
    "CUDA_LAUNCH_BLOCKING",
)
PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the mnist_bench folder this module is in
# Set in the child's environment to rehearse what it must survive: "graphed" or "in-flight"
# (that check fails for real), "die" (the child kills itself), "hang" (it never answers).
INJECT_ENV = "MNIST_BENCH_SELFCHECK_INJECT"


@dataclass(frozen=True)
class Verdict:
    graphed: bool  # graphed steps train as eager ones do on this machine
    in_flight: bool  # trainings in flight train as each does alone on this machine
    reason: str | None  # what failed, in one line; None when both passed
    machine: dict[str, str]  # what the verdict holds for (machine_key)
    checked_s: float  # when it was reached (Unix time)
    conclusive: bool = True  # the comparisons ran; False when the check crashed or hung

    @property
    def ok(self) -> bool:
        return self.graphed and self.in_flight

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Verdict:
        values = json.loads(text)
        return cls(
            graphed=bool(values["graphed"]),
            in_flight=bool(values["in_flight"]),
            reason=values.get("reason"),
            machine={str(k): str(v) for k, v in values["machine"].items()},
            checked_s=float(values["checked_s"]),
            conclusive=bool(values.get("conclusive", True)),
        )


def driver_version() -> str:
    """The NVIDIA driver's version, where Linux tells it."""
    try:
        with open("/proc/driver/nvidia/version") as lines:
            for word in lines.readline().split():
                if word[:1].isdigit() and "." in word:
                    return word
    except OSError:
        pass
    return "unknown"


def cublas_version() -> str:
    """The cuBLAS that pip installed beside torch (pip can upgrade it under the same torch)."""
    found = sorted(
        f"{dist.metadata['Name']} {dist.version}"
        for dist in importlib.metadata.distributions()
        if str(dist.metadata["Name"] or "").lower().startswith("nvidia-cublas")
    )
    return ", ".join(found) or "bundled"


def sources_digest(root: Path = PACKAGE_ROOT) -> str:
    """A digest of the package's own files (code, spaces, page): any change is another key."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in {".py", ".toml", ".html"}):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def machine_key(device: torch.device) -> dict[str, str]:
    """What a verdict holds for: the device's model, its driver, the software that drives it,
    the settings that change how it allocates and multiplies, and this package's sources."""
    cuda = device.type == "cuda"
    settings = {name: os.environ[name] for name in CUDA_SETTINGS if name in os.environ}
    return {
        "device": device_name(device),
        "driver": driver_version() if cuda else "none",
        "cuda": str(torch.version.cuda) if cuda else "none",
        "cublas": cublas_version() if cuda else "none",
        "torch": torch.__version__,
        "mnist_bench": __version__,
        "sources": sources_digest(),
        "settings": json.dumps(settings, sort_keys=True),
    }


def cache_dir() -> Path:
    """``$MNIST_BENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/mnist-bench``, else ``~/.cache/mnist-bench``."""
    if os.environ.get("MNIST_BENCH_CACHE_DIR"):
        return Path(os.environ["MNIST_BENCH_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mnist-bench"


def verdict_path(key: dict[str, str]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / f"selfcheck-{digest}.json"


def load_verdict(key: dict[str, str]) -> Verdict | None:
    """The kept verdict for ``key``; None if there is none, or it cannot be read."""
    try:
        verdict = Verdict.from_json(verdict_path(key).read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if verdict.machine != key:
        return None
    if not verdict.conclusive and time.time() - verdict.checked_s > INCONCLUSIVE_KEEP_S:
        return None  # a crash or hang a day ago: check again
    return verdict


def save_verdict(verdict: Verdict) -> Path:
    """Kept whole or not at all; a folder that cannot be written only costs a check next time."""
    path = verdict_path(verdict.machine)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_text(verdict.to_json() + "\n")
        partial.replace(path)
    except OSError:
        pass
    return path


# -- the check, in the child ---------------------------------------------------------------------
def check_here(device: torch.device, *, inject: str | None = None) -> Verdict:
    """Doctor's two comparisons of the fast paths, run in this process (the child's)."""
    from mnist_bench.measure import doctor  # noqa: PLC0415  (the child alone trains)

    data = doctor.synthetic_data(device)
    steps = "graphed" if device.type == "cuda" else "static step"
    configs = dict(doctor.CHECK_CONFIGS)
    if inject == "graphed":  # a real failing comparison: the fast side trains another seed
        configs = {name: replace(c, seed=c.seed + 100) for name, c in configs.items()}
    try:  # every precision the device trains in, the split-K net, an exact batch; then a resume
        checks = doctor.check_graphed_against_eager(data, steps, fast_configs=configs)
        checks.append(doctor.check_resume(data, steps))
    except Exception as exc:  # a path that raises has failed its check; the other is still checked
        checks = [doctor.Check(f"{steps} = eager", f"raised {one_line(exc)}", False)]
    failed = [c for c in checks if c.ok is False]
    graphed = not failed
    # In flight with the steps the command would use: graphed where they passed.
    runtime = doctor.fast_runtime(device) if graphed else Runtime(graphs=False)
    try:
        in_flight = doctor.check_in_flight(data, runtime=runtime, perturb=inject == "in-flight")
    except Exception as exc:
        found = f"raised {one_line(exc)}"
        in_flight = doctor.Check("trainings in flight = each alone", found, False)
    reasons = [f"{c.name}: {c.result}" for c in failed]
    if not in_flight.ok:
        reasons.append(f"{in_flight.name}: {in_flight.result}")
    reason = "; ".join(reasons)[:300] if reasons else None
    return Verdict(graphed, bool(in_flight.ok), reason, machine_key(device), time.time())


def main(argv: list[str] | None = None) -> None:
    """``python -m mnist_bench.measure.selfcheck --device cuda:0``: the child. Prints its verdict as one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m mnist_bench.measure.selfcheck")
    parser.add_argument("--device", required=True)
    device = torch.device(parser.parse_args(argv).device)
    inject = os.environ.get(INJECT_ENV) or None
    if inject == "die":
        os.kill(os.getpid(), 9)  # as a process killed by a device fault's abort would
    if inject == "hang":
        while True:
            time.sleep(60)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    print(check_here(device, inject=inject).to_json(), flush=True)
    if inject == "exit-after":  # as a child whose CUDA teardown fails after it has spoken
        os._exit(3)


# -- the parent ---------------------------------------------------------------------------------------
def run_check(device: torch.device, *, timeout_s: float = CHECK_TIMEOUT_S) -> Verdict:
    """Run the check in a child process; a crash or a hang is a verdict too (both paths off).

    The child imports this very copy of the package (its folder first on the path, from a
    neutral folder), and its verdict is stamped with the key it computed: a verdict printed
    is taken as printed, whatever the child's exit code after it."""
    key = machine_key(device)
    command = [sys.executable, "-m", "mnist_bench.measure.selfcheck", "--device", str(device)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_ROOT.parent),
                                                                       os.environ.get("PYTHONPATH")]))}  # fmt: skip
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(command, stdout=out, stderr=err, text=True, env=env, cwd=tempfile.gettempdir())
        try:
            code = child.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            child.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5)  # a child stuck in the driver may not even die: not waited for
            said = f"the self-check did not finish in {timeout_s:.0f} s"
            return Verdict(False, False, said, key, time.time(), conclusive=False)
        out.seek(0)
        err.seek(0)
        lines, errors = out.read().strip().splitlines(), err.read().strip().splitlines()
    for line in reversed(lines):
        with contextlib.suppress(ValueError, KeyError, TypeError):
            printed = Verdict.from_json(line)
            if printed.machine != key:  # another copy or setting than this process's: not ours to trust
                said = f"the self-check ran other code or settings than this process ({_differs(key, printed.machine)})"
                return Verdict(False, False, said, key, time.time(), conclusive=False)
            return printed
    said = f"the self-check process died (exit {code}: {(errors or ['no message'])[-1][:LINE_CHARS]})"
    return Verdict(False, False, said, key, time.time(), conclusive=False)


def _differs(ours: dict[str, str], theirs: dict[str, str]) -> str:
    return ", ".join(f"{k}: {ours.get(k)} here, {theirs.get(k)} there" for k in sorted(set(ours) | set(theirs))
                     if ours.get(k) != theirs.get(k))[:LINE_CHARS]  # fmt: skip


def verdict_from_checks(device: torch.device, checks: Sequence[Check]) -> Verdict:
    """Doctor's findings as the machine's verdict: what the self-check would have found."""
    graphed = [c for c in checks if " = eager" in c.name or c.name == "graphed against eager"]
    in_flight = [c for c in checks if "in flight" in c.name and not c.name.startswith("memory")]
    failed = [f"{c.name}: {c.result}" for c in graphed + in_flight if c.ok is False]
    return Verdict(
        graphed=bool(graphed) and all(c.ok is not False for c in graphed),
        in_flight=bool(in_flight) and all(c.ok is not False for c in in_flight),
        reason="; ".join(failed)[:300] or None,
        machine=machine_key(device),
        checked_s=time.time(),
    )


def needs_check(device: torch.device, runtime: Runtime, parallel: int) -> bool:
    """Whether a command would train on a CUDA device with graphed steps or trainings in flight
    (a search's ``--parallel``, or a retrain's seeds side by side)."""
    graphed = runtime.graphs and not runtime.compile
    side_by_side = runtime.side_by_side and not runtime.compile  # evaluate trains compiled seeds one at a time
    return device.type == "cuda" and (graphed or parallel > 1 or side_by_side)


def verdict_for(
    device: torch.device, *, timeout_s: float = CHECK_TIMEOUT_S, say: Callable[[str], None] = lambda _line: None
) -> tuple[Verdict, bool]:
    """The kept verdict for this machine, or a fresh one (then kept); and whether it was fresh.
    ``say`` hears, before a check runs, why the command pauses."""
    key = machine_key(device)
    kept = load_verdict(key)
    if kept is not None:
        return kept, False
    say(f"checking the fast paths on {key['device']}, once for this machine and code (seconds)...")
    verdict = run_check(device, timeout_s=timeout_s)
    save_verdict(verdict)
    return verdict, True


def trusted(
    device: torch.device,
    runtime: Runtime,
    parallel: int,
    *,
    steps: str = "auto",
    say: Callable[[str], None] = lambda _line: None,
    check: Callable[[torch.device], tuple[Verdict, bool]] | None = None,
) -> tuple[Runtime, int]:
    """The runtime and count in flight a command may use on ``device``.

    ``steps``: a name of ``config.STEPS``: auto (the machine's verdict decides), graphed
    (the fast paths as asked, unchecked) or eager (steps launched op by op, unchecked).
    ``check`` gives the verdict (default: ``verdict_for``; a test passes its own); ``say``
    gets the lines a user reads: that a check runs, and what a failed verdict turns off.
    """
    mode = steps_spec(steps)
    if not mode.graphs:
        runtime = replace(runtime, graphs=False)
    if not mode.self_check or not needs_check(device, runtime, parallel):
        return runtime, parallel
    verdict, fresh = check(device) if check is not None else verdict_for(device, say=say)
    if fresh and verdict.ok:
        say("the fast paths passed: graphed steps and trainings in flight, as designed")
    if verdict.ok:
        return runtime, parallel
    off = []
    if not verdict.graphed and runtime.graphs:
        runtime = replace(runtime, graphs=False)
        off.append("graphed steps")
    if not verdict.in_flight and (parallel > 1 or runtime.side_by_side):
        parallel = 1
        runtime = replace(runtime, side_by_side=False)
        off.append("trainings in flight")
    if off:
        say(
            f"the GPU self-check failed ({verdict.reason}): training without {' and '.join(off)}, "
            "slower but right; run `mnist-bench doctor` for details (--steps graphed overrides)"
        )
    return runtime, parallel


if __name__ == "__main__":
    main()
