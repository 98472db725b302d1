"""Atomic file writes: write to ONE temporary file in the target's folder, then rename it over the
target, so an interrupted write (even a SIGKILL) never leaves a half-written target behind.

The temporary file is ``.<target name>.<pid>.<random>.tmp``. A process killed mid-write leaves
it behind; the next write of the same target removes such stale temporaries (those of that target
whose writing process is gone, or began after the temporary was last written, i.e. a reused pid),
never another target's, nor one a live writer is still using.

safetensors files go through :func:`save_safetensors`: ``safetensors.torch.save_file`` writes
through a temporary of its own (``.tmpXXXXXX``, left behind by a kill), so the bytes are made in
memory (``safetensors.torch.save``) and written to our temporary instead.
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import tempfile
from pathlib import Path


def _first_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_out_file(path, flag: str = "output") -> Path:
    """Raise a one-line ``ValueError`` unless a file can be written at ``path``: not a folder, no
    existing file where one of its parent folders should be, a writable folder. Writes nothing."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{flag}={str(path)!r} is a folder; give a file name")
    _check_parents(path, flag)
    return path


def check_out_dir(path, flag: str = "output folder") -> Path:
    """Raise a one-line ``ValueError`` unless ``path`` is, or can be made, a writable folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag}={str(path)!r} is a file, not a folder")
    _check_parents(path, flag) if not path.exists() else _check_writable(path, path, flag)
    return path


def _check_parents(path: Path, flag: str) -> None:
    anc = _first_existing(path.parent if str(path.parent) else Path("."))
    if not anc.is_dir():
        raise ValueError(f"{flag}={str(path)!r}: {str(anc)!r} is a file, not a folder")
    _check_writable(anc, path, flag)


def _check_writable(folder: Path, path: Path, flag: str) -> None:
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{flag}={str(path)!r}: folder {str(folder)!r} is not writable")


def _process_start(pid: int) -> float | None:
    """Start time of process ``pid`` in seconds since the epoch (Linux /proc), else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        ticks = int(fields[19])  # field 22 (starttime) counted after the "(comm)" field
        btime = next(int(l.split()[1]) for l in Path("/proc/stat").read_text().splitlines()
                     if l.startswith("btime "))
        return btime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temps(path) -> list[Path]:
    """Remove the temporaries an interrupted write of ``path`` left beside it; returns them.

    Only ``.<name>.<pid>.*.tmp`` files of this very target are considered, and only those whose
    writer is gone: its pid does not run, or runs a process that started after the temporary was
    last written (the pid was reused)."""
    path = Path(path)
    removed = []
    prefix = f".{path.name}."
    for f in glob.glob(os.path.join(glob.escape(str(path.parent)), glob.escape(prefix) + "*.tmp")):
        f = Path(f)
        parts = f.name[len(prefix):-len(".tmp")].split(".")  # <pid>.<random>: mkstemp's has no dot
        if len(parts) != 2 or not parts[0].isdigit():
            continue  # not one of this target's temporaries (e.g. of a target "<name>.1")
        pid = int(parts[0])
        try:
            mtime = f.stat().st_mtime
        except FileNotFoundError:
            continue
        if pid == os.getpid() or _alive(pid):
            start = _process_start(pid)
            if start is None or start <= mtime:
                continue  # its writer may still be at work
        with contextlib.suppress(FileNotFoundError):
            f.unlink()
            removed.append(f)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.
    The writer must write the temporary path itself (not through a temporary of its own)."""
    path = check_out_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:  # the data is on disk before the rename makes it the target
            os.fsync(f.fileno())
        # mkstemp makes 0600 (and writers may recreate the file): give the final file the mode a
        # plain open() would, 0666 & ~umask
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes(path, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_text(path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_safetensors(path, tensors: dict, metadata: dict[str, str] | None = None) -> None:
    """``safetensors.torch.save_file`` through one temporary of ours (the file's bytes are built
    in memory first: peak memory is the tensors plus one copy of the file)."""
    from safetensors.torch import save

    write_bytes(path, save(tensors, metadata=metadata))
