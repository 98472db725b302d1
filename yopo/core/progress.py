"""Progress bars and log lines people read: tqdm bars on a terminal, stdlib ``logging`` for lines.

Everything goes through the ``"yopo"`` logger, so the usual logging configuration decides what
shows. A library caller who configured nothing sees nothing (Python's default level is WARNING);
the ``yopo`` command calls :func:`configure` with its ``-v``/``-q`` count (INFO by default). Bars
show only when the ``yopo`` logger is enabled for INFO *and* stderr is a terminal, so pipes, CI
logs and worker processes stay quiet; log lines are written through ``tqdm.write`` so they never
tear a bar. ``tqdm`` is imported only when a bar is actually shown (``import yopo`` stays light).

Why tqdm and not rich: tqdm is already a core dependency (training used it), needs no console
object threaded through the code, and nests bars (sweep > run > epoch) on its own.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator

LOGGER = "yopo"
_FORMAT = "%(message)s"


def get_logger(name: str = "") -> logging.Logger:
    """``yopo`` or a child such as ``yopo.sweep`` (``name="sweep"``)."""
    return logging.getLogger(f"{LOGGER}.{name}" if name else LOGGER)


def level_for(verbosity: int) -> int:
    """``-q`` (-1 and below) -> WARNING, default (0) -> INFO, ``-v`` (1 and above) -> DEBUG."""
    return logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG


class _TqdmHandler(logging.StreamHandler):
    """A stderr handler that writes through ``tqdm.write`` while a bar is open (no torn bars).
    Without a fixed stream it writes to whatever ``sys.stderr`` is at the time (test captures
    replace it)."""

    def __init__(self, stream=None):
        super().__init__(stream)
        self._fixed = stream

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = self._fixed if self._fixed is not None else sys.stderr
        try:
            msg = self.format(record)
            if _bars_open():
                from tqdm import tqdm

                tqdm.write(msg, file=self.stream)
            else:
                self.stream.write(msg + "\n")
                self.flush()
        except Exception:  # noqa: BLE001 - logging's own contract: never raise from emit
            self.handleError(record)


def _bars_open() -> bool:
    tqdm = sys.modules.get("tqdm")
    return bool(tqdm is not None and getattr(tqdm.tqdm, "_instances", None))


def configure(verbosity: int = 0, stream=None) -> logging.Logger:
    """Give the ``yopo`` logger one stderr handler at the level of ``verbosity`` (replacing a
    handler an earlier call installed). For the command line; libraries leave logging alone."""
    log = get_logger()
    for h in list(log.handlers):
        if isinstance(h, _TqdmHandler):
            log.removeHandler(h)
    handler = _TqdmHandler(stream)
    handler.setFormatter(logging.Formatter(_FORMAT))
    log.addHandler(handler)
    log.setLevel(level_for(verbosity))
    log.propagate = False  # the command owns stderr: no duplicate lines through the root logger
    return log


@contextlib.contextmanager
def configured(verbosity: int = 0, stream=None):
    """:func:`configure` for the duration of a block, then the ``yopo`` logger as it was (the
    command line's ``main`` is also called in-process, e.g. by tests)."""
    log = get_logger()
    saved = (list(log.handlers), log.level, log.propagate)
    configure(verbosity, stream)
    try:
        yield log
    finally:
        log.handlers[:] = saved[0]
        log.setLevel(saved[1])
        log.propagate = saved[2]


def bars_enabled(stream=None) -> bool:
    """Bars show when the ``yopo`` logger is enabled for INFO and stderr is a terminal, unless the
    environment sets ``YOPO_PROGRESS=0`` (sweep worker processes do: their terminal is the parent's)."""
    if os.environ.get("YOPO_PROGRESS") == "0":
        return False
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    return get_logger().isEnabledFor(logging.INFO) and bool(isatty and isatty())


class _NullBar:
    """What :func:`bar` yields when bars are off: accepts the calls, draws nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def set_description_str(self, desc: str = "", refresh: bool = True) -> None:
        pass


@contextlib.contextmanager
def bar(total: int | None, desc: str, unit: str = "it", leave: bool = False, enabled: bool | None = None):
    """A progress bar (tqdm, with rate and ETA) for ``total`` units, or a no-op when bars are off
    (:func:`bars_enabled`) or ``enabled`` is False. Inner bars default to ``leave=False`` so only
    the outermost stays on screen."""
    show = bars_enabled() if enabled is None else enabled and bars_enabled()
    if not show:
        yield _NullBar()
        return
    from tqdm.auto import tqdm

    b = tqdm(total=total, desc=desc, unit=unit, leave=leave, dynamic_ncols=True, file=sys.stderr)
    try:
        yield b
    finally:
        b.close()


def track(items: Iterable, desc: str, unit: str = "it", total: int | None = None,
          weight: Callable[[object], int] | None = None, min_total: int = 2) -> Iterator:
    """Iterate ``items`` under a bar. ``weight(item)`` counts units per item (e.g. the layers of an
    NMF batch, so the bar counts layers); no bar when fewer than ``min_total`` units (a bar for one
    layer is noise)."""
    if not bars_enabled():  # the common quiet case costs nothing: no list, no tqdm import
        yield from items
        return
    items = list(items)
    if total is None:
        total = sum(weight(i) for i in items) if weight is not None else len(items)
    with bar(total, desc, unit, enabled=total >= min_total) as b:
        for item in items:
            yield item
            b.update(weight(item) if weight is not None else 1)


class _Prefix(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "_yopo_prefixed", False):
            prefix = self.prefix.replace("%", "%%") if record.args else self.prefix
            record.msg = f"{prefix}{record.msg}"
            record._yopo_prefixed = True
        return True


@contextlib.contextmanager
def prefixed(prefix: str):
    """Within the block, every line of the ``yopo`` logger's handlers starts with ``prefix`` (a
    sweep tags the epoch lines of a run with that run)."""
    f = _Prefix(prefix)
    handlers = list(get_logger().handlers)
    for h in handlers:
        h.addFilter(f)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(f)
