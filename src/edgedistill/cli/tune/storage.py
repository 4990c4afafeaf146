"""The study's database: SQLite in the study folder by default, or any database URL (`--storage
postgresql://...`), through which several `tune` processes, on one machine or many, share one Optuna study.

A worker records a heartbeat for the trial it runs; a trial whose heartbeat stops (its worker was killed) is marked
FAIL by the next worker that looks, and queued again with the same recipe (Optuna's
RetryHeartbeatStaleTrialCallback), so it is neither lost nor counted twice.
"""
from __future__ import annotations

import contextlib
import re
import time
import warnings
from pathlib import Path
from typing import Iterator

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from sqlalchemy import event

from edgedistill.errors import UserError, first_line

MAX_RETRY = 2  # a recipe whose worker dies this often is given up, and another trial takes its place
CONNECT_TIMEOUT_S = 10


def sqlite_url(folder: Path) -> str:
    return f"sqlite:///{(folder / 'study.db').resolve()}"


# the query keys libpq and the SQLAlchemy dialects read a password from (postgresql://host/db?password=...)
SECRET_KEYS = ("password", "passwd", "pwd", "sslpassword", "secret")
# up to the last @ before the query: a password may hold an unencoded @ or /, the query an @ of its own
_USERINFO = re.compile(r"(://[^:/@\s]*:)[^\s?#]*@")
_QUERY_SECRET = re.compile(rf"([?&](?:{'|'.join(SECRET_KEYS)})=)[^&\s]*", re.IGNORECASE)


def _passwords(url: str) -> list[str]:
    """Every password the URL holds, in its user part or its query."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # an unparsable URL: the patterns in redacted() still hide its secrets
        return []
    found = [parsed.password] + [v for k, v in parsed.query.items() if k.lower() in SECRET_KEYS]
    return [str(p) for p in found if p and isinstance(p, str)]


def redacted(url: str) -> str:
    """The URL as it may be printed or stored: with *** for its password, in its user part or its query."""
    return _QUERY_SECRET.sub(r"\1***", _USERINFO.sub(r"\1***@", url))


def scrub(text: str, url: str) -> str:
    """`text` (a driver's message, which may quote the URL or its password) with the URL's secrets replaced."""
    for password in _passwords(url):
        text = text.replace(password, "***")
    return redacted(text)


def _engine_kwargs(url: str) -> dict:
    """SQLite waits for another worker's write instead of failing at once; a database server that does not
    answer is given up after CONNECT_TIMEOUT_S."""
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}
    if url.startswith("postgresql"):
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    return {}


@contextlib.contextmanager
def optuna_quiet() -> Iterator[None]:
    """Optuna's per-trial log lines and experimental-feature warnings held back (tune reports trials itself), its
    verbosity and the warning filters restored after."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(verbosity)


def _locked_from_the_start(storage: RDBStorage) -> RDBStorage:
    """Each SQLite transaction takes the database's write lock when it begins (BEGIN IMMEDIATE), so that Optuna's
    read-then-write of a trial's state, which hands a queued trial to one worker, is atomic between workers as a row
    lock makes it on PostgreSQL. pysqlite's own BEGIN comes at the first write, after the read: two workers could
    both take one queued trial. SQLAlchemy's recipe for SQLite transactions; connections made before are closed."""
    storage.engine.dispose()
    event.listen(storage.engine, "connect", lambda dbapi, record: setattr(dbapi, "isolation_level", None))
    event.listen(storage.engine, "begin", lambda connection: connection.exec_driver_sql("BEGIN IMMEDIATE"))
    return storage


def _connect(url: str, heartbeat_s: int) -> RDBStorage:
    with warnings.catch_warnings():  # heartbeats and the retry callback are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = RDBStorage(url, engine_kwargs=_engine_kwargs(url), heartbeat_interval=heartbeat_s,
                             grace_period=3 * heartbeat_s,
                             heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY))
    return _locked_from_the_start(storage) if url.startswith("sqlite") else storage


def open_storage(url: str, heartbeat_s: int) -> RDBStorage:
    """Connect (creating Optuna's tables on first use); a URL that is wrong or a server that cannot be reached is
    one line naming the URL without its password."""
    attempt = 0
    while True:
        try:
            return _connect(url, heartbeat_s)
        except Exception as exc:  # SQLAlchemy's and the drivers' many error types: none of them ours to show whole
            attempt += 1
            if attempt == 3 or "already exists" not in str(exc):  # else another worker made the tables meanwhile
                raise _storage_error(url, exc) from None
            time.sleep(1.0)


def _storage_error(url: str, exc: Exception) -> UserError:
    reason = first_line(getattr(exc, "orig", None) or exc)
    hint = ("pip install 'edgedistill[tune]' for PostgreSQL's driver"
            if isinstance(exc, ModuleNotFoundError) or "psycopg" in reason
            else "check the URL (dialect://user:password@host:port/database), that the server runs and accepts "
                 "this user")
    return UserError(f"--storage {redacted(url)}: cannot open the study database ({scrub(reason, url)}); {hint}")
