"""Where studies live: Optuna RDB storages (SQLite by default, PostgreSQL or MySQL to share).

Every storage is opened with a heartbeat, so a trial whose worker died (SIGKILL, a
lost machine) is noticed once it misses its heartbeats for the grace period, marked
failed and queued again with the same parameters.

On SQLite every transaction takes the database's write lock when it begins
(``BEGIN IMMEDIATE``). Optuna takes a queued trial by reading its state and writing
RUNNING in one transaction with ``SELECT ... FOR UPDATE``, a row lock SQLite does not
have: under pysqlite's deferred transactions two workers could both read WAITING, both
take the trial and both train it. With the lock taken up front the read and the write
are one step, so each queued trial (and each retry of a crashed worker's trial) goes to
exactly one worker, as on PostgreSQL.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna
import sqlalchemy
import sqlalchemy.exc
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from mnist_bench.errors import MnistBenchError, UsageError, one_line
from mnist_bench.storage.optuna_private import TrialHeartbeatModel, TrialModel, backend, study_storage

STORAGE_FILE = "mnist-bench.db"
HEARTBEAT_S = 10  # seconds between a running trial's heartbeats
GRACE_FACTOR = 3  # a trial is stale after this many heartbeats missed
MAX_RETRY = 3  # times the parameters of a stale trial are queued again
SQLITE_TIMEOUT_S = 60  # how long an SQLite writer waits for the file lock (several workers)
# What a lost database connection raises, from SQLAlchemy or through Optuna.
STORAGE_ERRORS = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    optuna.exceptions.StorageInternalError,
)


class RDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage, whose heartbeats outlive a database that stops answering.

    Optuna beats for a running trial from a thread of its own. A beat that met a database
    outage killed that thread, with a traceback on stderr, and the trial beat no more:
    once the database was back, any worker would take it for a crashed worker's trial,
    fail it and train it again. Here a missed beat is only missed; the next one retries.
    """

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            super().record_heartbeat(trial_id)
        except STORAGE_ERRORS:
            pass


def rdb_storage(study: optuna.Study) -> optuna.storages.RDBStorage | None:
    """The RDB storage under ``study`` (Optuna wraps it in a cache), or None for another kind."""
    storage = backend(study_storage(study))
    return storage if isinstance(storage, optuna.storages.RDBStorage) else None


def heartbeat_ages(storage: optuna.storages.RDBStorage, study_id: int) -> dict[int, float]:
    """Seconds since each running trial's last heartbeat, by trial number.

    Read on the database's clock, the one Optuna's grace period is measured on (SQLite's
    has whole seconds). Trials with no heartbeat yet are left out: Optuna never fails those.
    """
    trials, beats = TrialModel, TrialHeartbeatModel
    with Session(storage.engine) as session:  # read only: closed (rolled back) on exit
        now = session.execute(sqlalchemy.func.now()).scalar()
        rows = (
            session.query(trials.number, beats.heartbeat)
            .join(beats, beats.trial_id == trials.trial_id)
            .filter(trials.study_id == study_id, trials.state == TrialState.RUNNING)
            .all()
        )
    assert now is not None
    now = now.replace(tzinfo=None)  # PostgreSQL's is aware, the stored beats are not (as in Optuna)
    return {number: (now - beat).total_seconds() for number, beat in rows}


def default_storage(studies_dir: Path) -> str:
    return f"sqlite:///{(Path(studies_dir) / STORAGE_FILE).resolve()}"


def redact(url: str) -> str:
    """The URL with its password hidden, for messages."""
    try:
        from sqlalchemy.engine import make_url  # noqa: PLC0415  (optuna's own dependency)

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def host_of(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url  # noqa: PLC0415

        parsed = make_url(url)
        return f"{parsed.host}:{parsed.port}" if parsed.port else str(parsed.host or parsed.database)
    except Exception:
        return url


def open_storage(url: str, *, must_exist: bool = False, heartbeat_s: int = HEARTBEAT_S) -> RDBStorage:
    """An Optuna RDB storage, or a one-line error naming the URL (password hidden).

    ``must_exist`` refuses to create a new SQLite file, for commands that only read.
    """
    if "://" not in url:
        raise UsageError(
            f"storage {url!r} is not a URL (e.g. sqlite:///studies/mnist-bench.db, postgresql+psycopg://user@host/db)"
        )
    engine_kwargs: dict[str, object]
    sqlite = url.startswith("sqlite:///")
    if sqlite:
        path = Path(url.removeprefix("sqlite:///"))
        if must_exist and not path.is_file():
            raise MnistBenchError(f"no study storage at {path}: run `mnist-bench search` first, or pass --storage")
        path.parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    else:
        engine_kwargs = {"pool_pre_ping": True}  # drop connections the server closed
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_s,
                grace_period=GRACE_FACTOR * heartbeat_s,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
            )
    except Exception as exc:
        raise MnistBenchError(f"cannot open storage {redact(url)}: {one_line(exc)}") from None
    if sqlite:
        lock_on_begin(storage.engine)
    return storage


def lock_on_begin(engine: Engine) -> None:
    """Make every transaction on this SQLite engine begin with ``BEGIN IMMEDIATE``.

    SQLAlchemy's recipe for pysqlite: turn off the driver's own transaction handling
    (which begins late, and deferred) and emit the BEGIN ourselves. Connections opened
    before this (the storage's schema check) are dropped, so every one follows it.
    """

    @event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection: object, _record: object) -> None:
        dbapi_connection.isolation_level = None  # type: ignore[attr-defined]

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: object) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")  # type: ignore[attr-defined]

    engine.dispose()


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    return sorted(optuna.get_all_study_names(storage))


def load_study(name: str, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """An existing study, or an error listing the studies the storage holds."""
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = study_names(storage)
        known = ", ".join(names) if names else "none"
        raise MnistBenchError(f"study {name!r} does not exist in this storage (studies there: {known})") from None
