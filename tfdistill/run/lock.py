"""One `tfdistill run` at a time in a run folder: `<out>/run.lock`.

The chief of a run holds an exclusive `fcntl.flock` on that file from before it reads the
ledger until the run ends; the file holds JSON naming the holder (pid, host, start time, a
token) for the message a second run prints. The lock is the kernel's, not the file's
existence: the kernel drops it when its process ends, however it ends (SIGKILL, a crash, the
OOM killer), so a file left behind is taken over at once with a logged line, and a live run is
never judged dead by guessing from a pid (reused, or in another container's pid namespace), as
a lock made by `O_CREAT | O_EXCL` would need. On a network folder the lock reaches other hosts
where the file system carries `flock` (NFSv4 does; its server drops a dead client's locks after
its lease). For one that keeps `flock` local, the holder refreshes the file's time every
`HEARTBEAT_S`, and a lock naming another host is honoured until it is `STALE_AFTER_S` old.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from tfdistill.artifacts import FILE_MODE

LOCK = "run.lock"
HEARTBEAT_S = 60.0
STALE_AFTER_S = 600.0


class RunFolderBusy(RuntimeError):
    """Another `tfdistill run` holds the run folder."""


@dataclasses.dataclass
class RunLock:
    """A held lock: its file's descriptor and the thread that refreshes its time."""

    path: Path
    fd: int
    stop: threading.Event
    heartbeat: threading.Thread

    def release(self) -> None:
        """Stops the heartbeat, removes the file (while still holding it, so that a run
        waiting on this file finds it gone and makes a new one) and drops the lock."""
        self.stop.set()
        self.heartbeat.join()
        with contextlib.suppress(OSError):
            if _same_file(self.fd, self.path):
                self.path.unlink()
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def _holder(fd: int) -> dict | None:
    """The JSON a lock file holds, or None when it holds none (yet)."""
    with contextlib.suppress(OSError, ValueError):
        holder = json.loads(os.pread(fd, 4096, 0))
        if isinstance(holder, dict):
            return holder
    return None


def _who(holder: dict | None) -> str:
    if holder is None:
        return "a run whose lock names no process yet"
    started = holder.get("started")
    when = ""
    if isinstance(started, int | float):
        when = f", started {datetime.datetime.fromtimestamp(started):%Y-%m-%d %H:%M:%S}"
    return f"process {holder.get('pid')} on host {holder.get('host')}{when}"


def _busy(out: Path, holder: dict | None, why: str = "") -> RunFolderBusy:
    return RunFolderBusy(
        f"--out {str(out)!r} is in use by another tfdistill run ({_who(holder)}{why}); wait "
        "for it to end, or pass another --out. If that run is gone, delete "
        f"{str(out / LOCK)!r} and run this command again."
    )


def _beat(fd: int, stop: threading.Event, interval: float) -> None:
    while not stop.wait(interval):
        with contextlib.suppress(OSError):
            os.utime(fd)


def _open_locked(out: Path) -> tuple[int, dict | None]:
    """The lock file's descriptor, flocked, and the JSON it held; RunFolderBusy while another
    process holds it."""
    path = out / LOCK
    for _ in range(100):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise _busy(out, holder) from None
        if _same_file(fd, path):
            return fd, _holder(fd)
        os.close(fd)  # its holder removed it as we opened it: open the new one
    raise RunFolderBusy(f"could not lock {str(path)!r}: other runs keep replacing it.")


def _take(
    out: Path, fd: int, previous: dict | None, log: Callable[[str], None], stale_after_s: float
) -> None:
    """Writes this process into the flocked lock file `fd`; a lock left by a run on another
    host is honoured (RunFolderBusy) until it is `stale_after_s` old, one left by a dead run
    taken over with a logged line."""
    host = socket.gethostname()
    if previous is not None and previous.get("host") != host:
        age = time.time() - os.fstat(fd).st_mtime
        if age < stale_after_s:
            why = f"; its lock was refreshed {age:.0f} s ago, stale after {stale_after_s:.0f} s"
            raise _busy(out, previous, why)
    if previous is not None or os.fstat(fd).st_size:
        log(
            f"   taking over the lock in {str(out)!r} left by {_who(previous)}, which no "
            "longer holds it (it was killed or crashed); resuming"
        )
    me = {"pid": os.getpid(), "host": host, "started": time.time(), "token": uuid.uuid4().hex}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(me).encode(), 0)
    os.fsync(fd)


def acquire(
    out: str | os.PathLike,
    log: Callable[[str], None] = print,
    *,
    heartbeat_s: float = HEARTBEAT_S,
    stale_after_s: float = STALE_AFTER_S,
) -> RunLock:
    """Locks run folder `out` (made if missing) for this process, taking over a lock that its
    holder left behind (logged); RunFolderBusy when another run holds it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fd, previous = _open_locked(out)
    try:
        _take(out, fd, previous, log, stale_after_s)
    except OSError as error:
        os.close(fd)
        if error.errno and error.filename is None:
            raise OSError(error.errno, error.strerror, str(out / LOCK)) from error
        raise
    except BaseException:
        os.close(fd)
        raise
    stop = threading.Event()
    heartbeat = threading.Thread(target=_beat, args=(fd, stop, heartbeat_s), daemon=True)
    heartbeat.start()
    return RunLock(out / LOCK, fd, stop, heartbeat)
