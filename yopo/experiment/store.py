"""The SQLite results store of a sweep (WAL mode, one transaction per finished run): runs,
saliency families and sweep metadata. Written by ``yopo.experiment.sweep``, read by
``yopo.experiment.report``."""
from __future__ import annotations

import contextlib
import json
import math
import socket
import sqlite3
import time
import urllib.parse
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, sweep TEXT, status TEXT NOT NULL,
    model TEXT, dataset TEXT, label TEXT, method TEXT, mode TEXT, robust TEXT, sparsity REAL,
    seed INTEGER, mask_seed INTEGER, mask_dataset TEXT, variant TEXT,
    test_acc REAL, test_loss REAL, train_loss REAL, time_s REAL, calib_time_s REAL,
    achieved_sparsity REAL, family TEXT, settings TEXT NOT NULL, result TEXT, error TEXT,
    host TEXT, finished REAL);
CREATE TABLE IF NOT EXISTS families (
    key TEXT PRIMARY KEY, path TEXT NOT NULL, model TEXT, method TEXT, seed INTEGER, dataset TEXT,
    score_time_s REAL, settings TEXT, created REAL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""
RUN_COLUMNS = ("model", "dataset", "label", "method", "mode", "robust", "sparsity", "seed", "mask_seed",
               "mask_dataset", "variant")  # the run's identity axes
RESULT_COLUMNS = ("test_acc", "test_loss", "train_loss", "time_s", "calib_time_s", "achieved_sparsity")


def _insert(table: str, row: dict) -> str:
    """``INSERT OR REPLACE`` of ``row`` with one named parameter per column (generated, so the
    columns and the values cannot drift apart)."""
    return (f"INSERT OR REPLACE INTO {table} ({', '.join(row)}) "
            f"VALUES ({', '.join(':' + k for k in row)})")


def _connect_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection. Without a ``-wal`` file beside it (no writer, nothing pending) the
    file is opened ``immutable``: SQLite then creates no ``-wal``/``-shm`` files next to it either.
    With one (a sweep is running, or was killed), ``mode=ro`` reads the pending WAL too."""
    uri = "file:" + urllib.parse.quote(str(path.resolve()))
    wal = path.with_name(path.name + "-wal")
    queries = ["mode=ro", "mode=ro&immutable=1"] if wal.exists() else ["mode=ro&immutable=1"]
    err = None
    for query in queries:
        conn = sqlite3.connect(f"{uri}?{query}", uri=True, timeout=60.0)
        try:
            conn.execute("SELECT 1 FROM runs LIMIT 1").fetchall()
            return conn
        except sqlite3.OperationalError as e:
            conn.close()
            if "no such table" in str(e):
                raise ValueError(f"{path} is not a yopo sweep database (no runs table)") from None
            err = e  # e.g. mode=ro on WAL without permission to create the -shm index
        except sqlite3.DatabaseError as e:
            conn.close()
            raise ValueError(f"{path} is not a yopo sweep database ({e})") from None
    raise ValueError(f"cannot read {path}: {err}")


class ResultsDB:
    """The sweep database. Every write is one transaction; readers see only finished runs.

    ``readonly=True`` (what reports use) opens the file with SQLite's ``mode=ro`` (see
    :func:`_connect_readonly`): no schema, no journal-mode change, no write of any kind, and it
    works on a read-only file."""

    def __init__(self, path, *, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        if readonly:
            if not self.path.is_file():
                raise FileNotFoundError(f"results database {self.path} does not exist")
            self.conn = _connect_readonly(self.path)
            self.conn.row_factory = sqlite3.Row
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(self.path), timeout=60.0, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        try:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:
            self.conn.close()
            raise ValueError(f"{self.path} is not a yopo sweep database ({e})") from None

    def close(self) -> None:
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @contextlib.contextmanager
    def transaction(self):
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def done_ids(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT id FROM runs WHERE status = 'done'")}

    def record(self, run, result: dict | None, *, error: str | None = None) -> None:
        """Store one finished (or failed) run (a :class:`yopo.experiment.sweep.Run`) in a single
        transaction."""
        status = "done" if error is None else "failed"
        r = result or {}
        row = {"id": run.id, "sweep": run.settings.get("sweep"), "status": status,
               **{c: run.identity[c] for c in RUN_COLUMNS},
               **{c: _num(r.get(c)) for c in RESULT_COLUMNS},
               "family": run.family_key, "settings": json.dumps(run.settings, sort_keys=True, default=str),
               "result": json.dumps(r, sort_keys=True, default=_jsonable), "error": error,
               "host": socket.gethostname(), "finished": time.time()}
        with self.transaction() as c:
            c.execute(_insert("runs", row), row)

    def record_family(self, key: str, path: str, fam: dict, score_time_s: float) -> None:
        row = {"key": key, "path": str(path), **{c: fam.get(c) for c in ("model", "method", "seed", "dataset")},
               "score_time_s": score_time_s, "settings": json.dumps(fam, sort_keys=True, default=str),
               "created": time.time()}
        with self.transaction() as c:
            c.execute(_insert("families", row), row)

    def set_meta(self, key: str, value) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (:key, :value)",
                      {"key": key, "value": json.dumps(value, default=str)})

    def meta(self) -> dict:
        return {r[0]: json.loads(r[1]) for r in self.conn.execute("SELECT key, value FROM meta")}

    def runs(self, status: str | None = "done") -> list[dict]:
        q = "SELECT * FROM runs" + (" WHERE status = :status" if status else "") + " ORDER BY rowid"
        rows = self.conn.execute(q, {"status": status})
        out = []
        for row in rows:
            d = dict(row)
            d["settings"] = json.loads(d["settings"])
            d["result"] = json.loads(d["result"]) if d["result"] else {}
            out.append(d)
        return out

    def families(self) -> list[dict]:
        out = []
        for row in self.conn.execute("SELECT * FROM families ORDER BY rowid"):
            d = dict(row)
            d["settings"] = json.loads(d["settings"]) if d["settings"] else {}
            out.append(d)
        return out

    def count(self, status: str = "done") -> int:
        return self.conn.execute("SELECT COUNT(*) FROM runs WHERE status = :status", {"status": status}).fetchone()[0]


def _num(v):
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _jsonable(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)
