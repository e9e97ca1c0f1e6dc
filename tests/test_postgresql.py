"""Every test that needs the PostgreSQL server, in one file: pytest-xdist (``--dist
loadfile``) runs a file's tests one after another, and the outage tests stop the server.

``.ci/run`` starts the server and names a database in ``$MNIST_BENCH_TEST_POSTGRES``;
elsewhere these tests skip.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import optuna
import pytest

from tests.test_storage import stress
from tests.test_workers import check_exactly, run_parallel, search_command, wait_for_running

POSTGRES = os.environ.get("MNIST_BENCH_TEST_POSTGRES")
pytestmark = pytest.mark.skipif(not POSTGRES, reason="MNIST_BENCH_TEST_POSTGRES not set (no PostgreSQL server)")


def test_each_queued_trial_goes_to_one_process_on_postgresql(tmp_path: Path) -> None:
    assert POSTGRES is not None
    name = f"queue-{os.getpid()}-{time.time_ns()}"
    try:
        stress(POSTGRES, name, tmp_path)
    finally:
        optuna.delete_study(study_name=name, storage=POSTGRES)


def test_four_workers_on_postgresql_finish_exactly_the_target(tiny_mnist: Path) -> None:
    assert POSTGRES is not None
    name = f"pg-{os.getpid()}-{time.time_ns()}"
    study = run_parallel(POSTGRES, tiny_mnist, workers=4, trials=12, study=name)
    check_exactly(study, 12)
    optuna.delete_study(study_name=name, storage=POSTGRES)


# .ci/run also says how to stop and restart its server, for the database-outage tests.
POSTGRES_CTL = os.environ.get("MNIST_BENCH_TEST_POSTGRES_CTL")
needs_ctl = pytest.mark.skipif(not POSTGRES_CTL, reason="no controllable PostgreSQL server")


def postgres_ctl(action: str) -> None:
    assert POSTGRES_CTL is not None
    subprocess.run(["bash", POSTGRES_CTL, action], check=True, capture_output=True)


def outage_search(tmp_path: Path, tiny_mnist: Path, study: str, retry: str) -> subprocess.Popen[str]:
    """A search of 3 trials, returned once its first trial trains: the outage that follows
    falls inside a trial however slowly a loaded machine starts the process (a fixed
    6-second wait let it fall before the study existed)."""
    assert POSTGRES is not None
    # Long enough trials that a 4-second outage falls inside the search, no longer.
    command = search_command(
        tmp_path, tiny_mnist, "--storage", POSTGRES, "--study", study, "--storage-retry", retry, epochs=300
    )
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_running(POSTGRES, process, timeout=120, study=study)
    return process


@needs_ctl
def test_database_back_within_the_retry_window(tmp_path: Path, tiny_mnist: Path) -> None:
    study = f"outage-{time.time_ns()}"
    process = outage_search(tmp_path, tiny_mnist, study, "60")
    postgres_ctl("pause")
    time.sleep(4)
    postgres_ctl("resume")
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert "3/3 finished" in out and "Traceback" not in err, out + err


@needs_ctl
def test_database_gone_for_good_gives_one_line_and_keeps_trials(tmp_path: Path, tiny_mnist: Path) -> None:
    assert POSTGRES is not None
    study = f"gone-{time.time_ns()}"
    process = outage_search(tmp_path, tiny_mnist, study, "3")
    before = len(optuna.load_study(study_name=study, storage=POSTGRES).trials)
    postgres_ctl("pause")
    try:
        out, err = process.communicate(timeout=120)
    finally:
        postgres_ctl("resume")
    assert process.returncode == 1
    assert err.startswith("Error: lost the storage at 127.0.0.1:") and err.count("\n") == 1, err
    assert len(optuna.load_study(study_name=study, storage=POSTGRES).trials) >= before
