"""The doctor command: does this machine train right, and how fast? Run it first on a new machine."""

from __future__ import annotations

import time

import typer

from mnist_bench.cli.common import Device, app, make_console
from mnist_bench.measure.doctor import run_doctor
from mnist_bench.measure.selfcheck import save_verdict, verdict_from_checks
from mnist_bench.output.console import doctor_table, key_value_table
from mnist_bench.training.device import resolve_device, select_device


@app.command()
def doctor(device: Device = "auto") -> None:
    """Check that fast training (graphed steps, trainings in flight, resuming) trains exactly what
    plain eager steps do on this machine, and time it. Exit 1 if any check fails."""
    chosen = select_device(resolve_device(device))
    console = make_console()
    started = time.perf_counter()
    with console.status("checking...") as status:
        report = run_doctor(chosen, progress=lambda part: status.update(f"checking: {part}..."))
    env = report.environment
    console.print(
        key_value_table(
            {
                "torch": str(env["torch"]),
                "CUDA": str(env["cuda"] or "-"),
                "device": f"{env['device']} ({env['device_name']})",
                "CPU cores, torch threads": f"{env['cpu_count']}, {env['torch_threads']}",
                "fast steps": report.steps,
            },
            title="mnist-bench doctor",
        )
    )
    console.print(doctor_table(report.checks))
    # What doctor found is this machine's self-check verdict too: a later command trusts it.
    verdict = verdict_from_checks(chosen, report.checks)
    found = "fast paths trusted" if verdict.ok else f"fast paths off ({verdict.reason})"
    console.print(f"Self-check verdict for this machine and code: {found}; kept in {save_verdict(verdict)}.")
    failed = [check.name for check in report.checks if check.ok is False]
    seconds = time.perf_counter() - started
    if failed:
        typer.echo(f"Error: {len(failed)} check(s) failed: {'; '.join(failed)} ({seconds:.0f} s)", err=True)
        raise typer.Exit(1)
    console.print(f"All checks passed in {seconds:.0f} s.")
