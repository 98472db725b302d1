"""What a reader gets from `yopo report` (issue 14, items 4 and 6): the input database is never
written (opened read-only, also from a read-only file), no absolute path in a shipped report, and
figures a paper reader can use (layer names, a dense baseline, every sparsity of the sweep, no
stacked bars on a log axis)."""
import os
import re
import sqlite3
import stat
from pathlib import Path

import pytest

from yopo.experiment.report import build_report, figures
from yopo.experiment.store import ResultsDB
from yopo.experiment.sweep import SweepSpec, run_sweep

ROOT = Path(__file__).resolve().parents[1]
ABSOLUTE = re.compile(r"(?<![\w.~-])/(?:work|tmp|home|root|Users|var|mnt|opt)/")


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    spec = SweepSpec.from_dict({
        "name": "rep", "out": str(out), "models": ["mlp_digits"], "datasets": ["digits"],
        "methods": [{"label": "yopo-G", "method": "yopo", "opts": {"iters": 10, "rank": 2}}, "magnitude"],
        "sparsities": [0.0, 0.5, 0.8, 0.95], "seeds": [0, 1], "runner": "synthetic"})
    assert run_sweep(spec, log=lambda m: None).failed == 0
    return out / "results.sqlite"


def _capture(monkeypatch):
    """Keep the matplotlib figures the report draws (instead of closing them)."""
    figs = {}

    def save(fig, out_dir, name, formats=figures.FIG_FORMATS):
        figs[name] = fig
        return [f"{name}.png"]

    monkeypatch.setattr(figures, "_save", save)
    return figs


def test_report_never_writes_its_database(db, tmp_path):
    ro = tmp_path / "ro" / "results.sqlite"
    ro.parent.mkdir()
    ro.write_bytes(db.read_bytes())
    os.chmod(ro, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)  # a read-only file works
    before, mtime = ro.read_bytes(), ro.stat().st_mtime_ns
    build_report(ro, tmp_path / "rep", saliency_figures=False, formats=("png",))
    assert ro.read_bytes() == before and ro.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in ro.parent.iterdir()) == ["results.sqlite"]  # no -wal / -shm beside it
    with ResultsDB(ro, readonly=True) as rdb:  # the connection itself refuses writes (root ignores chmod)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            rdb.conn.execute("DELETE FROM runs")
        assert rdb.count() == 16
    with pytest.raises(ValueError, match="not a yopo sweep database"):
        (tmp_path / "junk.sqlite").write_bytes(b"not a database at all, just some bytes" * 40)
        ResultsDB(tmp_path / "junk.sqlite", readonly=True)


def test_report_of_a_database_being_written(db, tmp_path):
    """With a -wal file beside it (a sweep writing), the report reads the pending runs too."""
    live = tmp_path / "live"
    live.mkdir()
    (live / "results.sqlite").write_bytes(db.read_bytes())
    writer = sqlite3.connect(live / "results.sqlite", isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("UPDATE runs SET test_acc = 12.5 WHERE rowid = 1")
    assert (live / "results.sqlite-wal").exists()
    with ResultsDB(live / "results.sqlite", readonly=True) as rdb:
        assert rdb.runs()[0]["test_acc"] == 12.5
    writer.close()


def test_no_absolute_paths_in_reports(db, tmp_path):
    build_report(db, tmp_path / "rep", saliency_figures=False, formats=("png",))
    for p in (tmp_path / "rep").glob("*.*"):
        if p.suffix in (".md", ".tex"):
            assert not ABSOLUTE.search(p.read_text()), p.name
    assert "`../" in (tmp_path / "rep" / "README.md").read_text()  # the database, relative to the report


def test_shipped_results_carry_no_absolute_paths():
    bad = []
    for p in (ROOT / "benchmarks" / "results").rglob("*"):
        if p.suffix in (".md", ".tex", ".json", ".txt", ".csv"):
            bad += [f"{p.relative_to(ROOT)}: {m}" for m in ABSOLUTE.findall(p.read_text())]
    for db in sorted((ROOT / "benchmarks" / "results").rglob("results.sqlite")):  # every shipped database
        with ResultsDB(db, readonly=True) as rdb:
            for t in ("runs", "families", "meta"):
                for row in rdb.conn.execute(f"SELECT * FROM {t}"):
                    bad += [f"{db.name}:{t}" for v in row if isinstance(v, str) and ABSOLUTE.search(v)]
    assert not bad, bad[:5]


def test_figures_a_reader_can_use(db, tmp_path, monkeypatch):
    figs = _capture(monkeypatch)
    made = build_report(db, tmp_path, iters=10, ranks=(2, 3), profile_sparsities=(0.5, 0.9), formats=("png",))
    assert {"fig2_acc_vs_sparsity", "fig8_mask_time", "fig1b_layer_sparsity", "fig5_layer_profile",
            "fig3b_saliency_ranks"} <= set(figs), made["skipped"]
    # Fig. 2: a tick at every pruned sparsity of the sweep and a dense baseline line
    ax = figs["fig2_acc_vs_sparsity"].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["50%", "80%", "95%"]
    legend = [t.get_text() for t in figs["fig2_acc_vs_sparsity"].legends[0].get_texts()]
    assert any(t.startswith("dense ") for t in legend) and {"yopo-G", "magnitude"} <= set(legend)
    # Fig. 8: bars side by side from 0 (never stacked) on a log axis
    ax = figs["fig8_mask_time"].axes[0]
    assert ax.get_yscale() == "log" and all(p.get_y() == 0 for p in ax.patches)
    # layer figures: parameter names (without .weight) on the x axis, in model order; the profiles
    # cover the requested sparsities and every sparsity of the sweep
    names = ["features.0", "features.2", "classifier"]  # mlp_digits
    for name in ("fig1b_layer_sparsity", "fig5_layer_profile", "fig3b_saliency_ranks"):
        ticks = [t.get_text() for t in figs[name].axes[0].get_xticklabels()]
        assert ticks == names, (name, ticks)
    rows = [t.get_text() for t in figs["fig1b_layer_sparsity"].axes[0].get_yticklabels()]
    assert rows == ["50%", "80%", "90%", "95%"]
