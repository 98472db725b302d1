"""Start-up time of the CLI: ``yopo --help``, ``yopo models``, ``yopo methods`` and a mistyped
command, against ``python -c pass`` (the interpreter alone), in fresh processes.

Each command runs ``--runs`` times, alternating with the baseline; reported: median wall time,
the median overhead over the interpreter, whether torch was imported (it must not be), and the
target (``yopo --help`` under 0.3 s wall). Machine and load go with the evidence to
benchmarks/results/startup.json (``--quick``: 5 runs, startup_draft.json).

    python benchmarks/startup.py [--runs 20] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# as `python -m yopo ARGS`, then one line on stderr telling whether torch was imported
WRAPPER = ("import runpy, sys\nsys.argv = ['yopo', *sys.argv[1:]]\ntry:\n"
           "    runpy.run_module('yopo', run_name='__main__', alter_sys=True)\nexcept SystemExit:\n    pass\n"
           "sys.stderr.write('TORCH_IMPORTED=%s' % ('torch' in sys.modules))\n")
COMMANDS = {"python -c pass": None, "yopo --help": ["--help"], "yopo models": ["models"],
            "yopo methods": ["methods"], "yopo bogus (error)": ["bogus"], "python -m yopo --help": "module"}
TARGET_S = 0.3


def run_once(args) -> tuple[float, bool | None]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if args is None:
        cmd = [sys.executable, "-c", "pass"]
    elif args == "module":
        cmd = [sys.executable, "-m", "yopo", "--help"]
    else:
        cmd = [sys.executable, "-c", WRAPPER, *args]
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    dt = time.perf_counter() - t
    torch = None if args in (None, "module") else "TORCH_IMPORTED=True" in r.stderr
    return dt, torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="5 runs; writes startup_draft.json")
    args = ap.parse_args()
    runs = 5 if args.quick else args.runs
    sys.path.insert(0, str(ROOT))
    from yopo.methods.yopo.hardware import cpu_info  # noqa: E402  (torch is fine in this parent process)

    cpu, flags = cpu_info()
    load0 = os.getloadavg()
    times = {k: [] for k in COMMANDS}
    torch_seen = {}
    for _ in range(runs):
        for name, a in COMMANDS.items():
            dt, tr = run_once(a)
            times[name].append(dt)
            if tr is not None:
                torch_seen[name] = torch_seen.get(name, False) or tr
    base = statistics.median(times["python -c pass"])
    print(f"# {cpu}, {os.cpu_count()} cores, python {platform.python_version()}, load {load0}, {runs} runs each")
    rows = []
    for name in COMMANDS:
        med = statistics.median(times[name])
        rows.append({"command": name, "median_s": med, "overhead_over_python_s": med - base, "all_s": times[name],
                     "imports_torch": torch_seen.get(name)})
        print(f"{name:24s} {med * 1e3:7.1f} ms  (+{(med - base) * 1e3:6.1f} ms over python)"
              + ("" if name not in torch_seen else f"  torch imported: {torch_seen[name]}"))
    helper = statistics.median(times["yopo --help"])
    print(f"target: yopo --help < {TARGET_S} s wall: {'met' if helper < TARGET_S else 'NOT met'} ({helper:.3f} s)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("startup_draft.json" if args.quick else "startup.json")
    sys.path.insert(0, str(ROOT))
    from yopo.core.io import write_text

    write_text(out, json.dumps({"env": {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
                                        "loadavg_at_start": load0, "loadavg_at_end": os.getloadavg()},
                                "runs": runs, "target_s": TARGET_S, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
