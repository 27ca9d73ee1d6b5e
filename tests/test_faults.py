"""Faults around a run folder: one run at a time (`run.lock`), and a folder that cannot be
written or a disk that fills mid-write, each one line from `tfdistill run` with every earlier
file left as it was. The runs here use stand-in stages: no data is read, nothing trains."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from absl import flags

from tfdistill import artifacts, cli, resume
from tfdistill import run as run_lib
from tfdistill.run import lock, runner
from tfdistill.run.stages import Stage

ROOT = Path(__file__).parent.parent


class Writes(Stage):
    """A stand-in stage that writes `file` through the atomic writer, `text` or a write that
    `fail` makes fail."""

    def __init__(self, name: str, file: str, text: str, calls: list) -> None:
        self.name, self.file, self.text, self.calls = name, file, text, calls

    def settings(self, config):
        return {"text": self.text}

    def files(self, run, record):
        return [self.file]

    def work(self, run):
        self.calls.append(self.name)
        artifacts.write_atomic(run.keep / self.file, lambda f: f.write(self.text))
        return None, {}

    def reload(self, run, record):
        return None

    def deliver(self, run, value, record):
        run.result = {"written": self.file}


def stand_ins(monkeypatch, texts: dict[str, str]) -> list[str]:
    """`run` runs one `Writes` stage per (file, text) of `texts`; the names of those that ran."""
    calls: list[str] = []
    stages = [Writes(Path(f).stem, f, t, calls) for f, t in texts.items()]
    monkeypatch.setattr(runner, "stages_of", lambda config: stages)
    return calls


def cli_run(*args: str) -> tuple[int, str]:
    """`tfdistill run ARGS` in this process: (exit status, stderr's one line)."""
    argv = flags.FLAGS(["tfdistill", *args])
    try:
        return cli._main([*argv, "run"])
    finally:
        flags.FLAGS.unparse_flags()


def one_line(capsys) -> str:
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith("tfdistill run: ")
    return captured.err.strip()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp"))


def test_a_second_run_on_a_busy_folder_stops_at_once_naming_the_first(tmp_path):
    """The `tfdistill` command itself, while this process holds the folder: one line naming
    this process and its host, long before a run could have read its data."""
    out = tmp_path / "run"
    held = lock.acquire(out, log=lambda _: None)
    try:
        began = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "tfdistill.cli", "run", f"--out={out}", "--dataset=digits"],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        seconds = time.monotonic() - began
    finally:
        held.release()
    lines = [line for line in result.stderr.splitlines() if line.startswith("tfdistill")]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    line = lines[0]
    assert f"process {os.getpid()} on host {socket.gethostname()}" in line
    assert "in use by another tfdistill run" in line and "pass another --out" in line
    assert seconds < 60
    assert not (out / resume.LEDGER).exists()
    assert not (out / lock.LOCK).exists()


def test_a_run_holds_the_folder_until_it_ends_however_it_ends(tmp_path, monkeypatch):
    """While a run's stage works, a second one is refused without running anything; the lock
    goes when the run ends, on an error and on Ctrl-C too."""
    out = tmp_path / "run"
    config = run_lib.RunConfig(out=str(out), quiet=True)
    calls = stand_ins(monkeypatch, {"a.txt": "a"})
    refused = []

    def inner_run(self, run):
        with pytest.raises(lock.RunFolderBusy, match="in use by another tfdistill run") as error:
            run_lib.run(config, log=lambda _: None)
        refused.append(str(error.value))
        return None, {}

    monkeypatch.setattr(Writes, "work", inner_run)
    run_lib.run(config, log=lambda _: None)
    assert f"process {os.getpid()}" in refused[0] and calls == []
    assert not (out / lock.LOCK).exists()
    for fault in (OSError(errno.EIO, "I/O error"), KeyboardInterrupt()):

        def failing(self, run, fault=fault):
            raise fault

        monkeypatch.setattr(Writes, "work", failing)
        monkeypatch.setattr(Writes, "settings", lambda self, config, f=fault: {"again": repr(f)})
        with pytest.raises(type(fault)):
            run_lib.run(config, log=lambda _: None)
        assert not (out / lock.LOCK).exists()


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_logged_line(tmp_path, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    pid = int(gone.stdout)
    left = {"pid": pid, "host": socket.gethostname(), "started": time.time() - 60, "token": "x"}
    (out / lock.LOCK).write_text(json.dumps(left))
    calls = stand_ins(monkeypatch, {"a.txt": "a"})
    logged: list[str] = []
    run_lib.run(run_lib.RunConfig(out=str(out), quiet=True), log=logged.append)
    takeover = [line for line in logged if "taking over the lock" in line]
    assert len(takeover) == 1 and f"process {pid} on host" in takeover[0], logged
    assert calls == ["a"] and not (out / lock.LOCK).exists()


def test_another_hosts_lock_is_honoured_until_it_is_stale(tmp_path):
    """A lock file naming another host (on a file system whose flock stays on one host)
    refuses the folder while its heartbeat is fresh, and is taken over once it is not."""
    out = tmp_path / "run"
    out.mkdir()
    path = out / lock.LOCK
    path.write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": time.time()}))
    with pytest.raises(lock.RunFolderBusy, match="process 1 on host elsewhere.*refreshed"):
        lock.acquire(out, log=lambda _: None)
    stale = time.time() - lock.STALE_AFTER_S - 1
    os.utime(path, (stale, stale))
    logged: list[str] = []
    lock.acquire(out, log=logged.append).release()
    assert len(logged) == 1 and "host elsewhere" in logged[0]


def test_the_heartbeat_refreshes_the_lock(tmp_path):
    out = tmp_path / "run"
    held = lock.acquire(out, log=lambda _: None, heartbeat_s=0.05)
    try:
        old = time.time() - 1000
        os.utime(out / lock.LOCK, (old, old))
        time.sleep(0.5)
        assert time.time() - (out / lock.LOCK).stat().st_mtime < 10
        holder = json.loads((out / lock.LOCK).read_text())
        assert (holder["pid"], holder["host"]) == (os.getpid(), socket.gethostname())
        assert holder["token"] and holder["started"] <= time.time()
    finally:
        held.release()


def test_an_out_under_a_file_is_one_line(tmp_path, capsys, monkeypatch):
    calls = stand_ins(monkeypatch, {"a.txt": "a"})
    (tmp_path / "file").write_text("not a folder")
    assert cli_run(f"--out={tmp_path / 'file' / 'run'}") == 2
    line = one_line(capsys)
    assert "Not a directory" in line and str(tmp_path / "file" / "run") in line
    assert "pass an --out under a folder" in line
    assert calls == []


class FullDisk:
    """A file whose writes fail with ENOSPC once `room` bytes are written."""

    def __init__(self, file, room: int) -> None:
        self.file, self.room = file, room

    def write(self, data):
        if len(data) > self.room:
            self.file.write(data[: self.room])
            self.file.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


def fill_disk_after(monkeypatch, room: int) -> None:
    """Every atomic write from now on runs out of space after `room` bytes."""
    fdopen = os.fdopen
    monkeypatch.setattr(artifacts.os, "fdopen", lambda *a, **k: FullDisk(fdopen(*a, **k), room))


def test_a_disk_that_fills_mid_write_is_one_line_and_keeps_every_earlier_file(
    tmp_path, capsys, monkeypatch
):
    """A stage rewriting report.json runs out of space half-way: one line naming the file,
    the problem and the way out; the old report.json byte for byte, a whole ledger, no
    temporary file; the same command then goes on after the last finished stage."""
    out = tmp_path / "run"
    config = run_lib.RunConfig(out=str(out), quiet=True)
    stand_ins(monkeypatch, {"a.txt": "a", "report.json": '{"old": 1}'})
    run_lib.run(config, log=lambda _: None)
    before = (out / "report.json").read_bytes()
    calls = stand_ins(monkeypatch, {"a.txt": "a", "report.json": '{"new": 2, "pad": "' + "x" * 99})
    real_write = artifacts.write_atomic

    def report_fills_the_disk(path, write, mode="w"):
        if Path(path).name == "report.json":
            with monkeypatch.context() as patch:
                fill_disk_after(patch, 8)
                return real_write(path, write, mode)
        return real_write(path, write, mode)

    monkeypatch.setattr(artifacts, "write_atomic", report_fills_the_disk)
    assert cli_run(f"--out={out}", "--quiet") == 2
    line = one_line(capsys)
    assert "No space left on device" in line and str(out / "report.json") in line
    assert "free space there" in line and "run the same command again" in line
    assert calls == ["report"]
    assert (out / "report.json").read_bytes() == before
    assert set(json.loads((out / resume.LEDGER).read_text())["stages"]) == {"a"}
    assert leftovers(out) == [] and not (out / lock.LOCK).exists()
    monkeypatch.setattr(artifacts, "write_atomic", real_write)
    run_lib.run(config, log=lambda _: None)
    assert calls == ["report", "report"]


def test_a_disk_full_while_the_ledger_is_written_keeps_the_old_ledger(tmp_path, monkeypatch):
    out = tmp_path / "run"
    config = run_lib.RunConfig(out=str(out), quiet=True)
    stand_ins(monkeypatch, {"a.txt": "a"})
    run_lib.run(config, log=lambda _: None)
    before = (out / resume.LEDGER).read_bytes()
    stand_ins(monkeypatch, {"a.txt": "changed"})
    fill_disk_after(monkeypatch, 10)
    with pytest.raises(OSError, match="No space left") as error:
        run_lib.run(config, log=lambda _: None)
    assert error.value.errno == errno.ENOSPC and error.value.filename == str(out / resume.LEDGER)
    assert (out / resume.LEDGER).read_bytes() == before
    assert (out / "a.txt").read_text() == "a"
    assert leftovers(out) == [] and not (out / lock.LOCK).exists()


def test_a_full_disk_while_a_model_is_saved_leaves_no_temporary_file(tmp_path):
    class Model:
        def save(self, path):
            Path(path).write_bytes(b"half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    (tmp_path / "m.keras").write_bytes(b"old model")
    with pytest.raises(OSError) as error:
        artifacts.save_model(Model(), tmp_path / "m.keras")
    assert error.value.filename == str(tmp_path / "m.keras")
    assert (tmp_path / "m.keras").read_bytes() == b"old model"
    assert leftovers(tmp_path) == [] and sorted(os.listdir(tmp_path)) == ["m.keras"]


def test_a_full_disk_while_the_lock_is_written_names_the_lock_and_holds_nothing(
    tmp_path, monkeypatch
):
    def full(fd, data, offset):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as patch:
        patch.setattr(lock.os, "pwrite", full)
        with pytest.raises(OSError) as error:
            lock.acquire(tmp_path, log=lambda _: None)
    assert error.value.filename == str(tmp_path / lock.LOCK)
    lock.acquire(tmp_path, log=lambda _: None).release()
