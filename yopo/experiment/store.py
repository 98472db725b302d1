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
               "mask_dataset", "variant")


class ResultsDB:
    """The sweep database. Every write is one transaction; readers see only finished runs."""

    def __init__(self, path):
        self.path = Path(path)
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
        vals = {c: run.identity[c] for c in RUN_COLUMNS}
        with self.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO runs (id, sweep, status, " + ", ".join(RUN_COLUMNS) +
                ", test_acc, test_loss, train_loss, time_s, calib_time_s, achieved_sparsity, family, settings, "
                "result, error, host, finished) VALUES (" + ", ".join(["?"] * (len(RUN_COLUMNS) + 15)) + ")",
                (run.id, run.settings.get("sweep"), status, *[vals[c] for c in RUN_COLUMNS],
                 _num(r.get("test_acc")), _num(r.get("test_loss")), _num(r.get("train_loss")), _num(r.get("time_s")),
                 _num(r.get("calib_time_s")), _num(r.get("achieved_sparsity")), run.family_key,
                 json.dumps(run.settings, sort_keys=True, default=str),
                 json.dumps(r, sort_keys=True, default=_jsonable), error, socket.gethostname(), time.time()))

    def record_family(self, key: str, path: str, fam: dict, score_time_s: float) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO families VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (key, str(path), fam.get("model"), fam.get("method"), fam.get("seed"), fam.get("dataset"),
                       score_time_s, json.dumps(fam, sort_keys=True, default=str), time.time()))

    def set_meta(self, key: str, value) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value, default=str)))

    def meta(self) -> dict:
        return {r[0]: json.loads(r[1]) for r in self.conn.execute("SELECT key, value FROM meta")}

    def runs(self, status: str | None = "done") -> list[dict]:
        q = "SELECT * FROM runs" + (" WHERE status = ?" if status else "") + " ORDER BY rowid"
        rows = self.conn.execute(q, (status,) if status else ())
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
        return self.conn.execute("SELECT COUNT(*) FROM runs WHERE status = ?", (status,)).fetchone()[0]


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
