"""What machine a benchmark ran on: CPU model and features, cores, memory, library versions."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

from tfdistill import _keras_internals

FEATURES = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile")
ARM_FEATURES = ("neon", "asimd", "asimddp", "i8mm", "sve", "sme")
PACKAGES = ("tensorflow", "keras", "ai-edge-litert", "numpy", "tfdistill")


def parse_cpuinfo(text: str) -> dict:
    """{"model": str | None, "flags": [...]} from the text of /proc/cpuinfo: the first
    processor's model name, and which of `FEATURES` / `ARM_FEATURES` its flags list."""
    model, flags = None, set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and model is None:
            model = value.strip() or None
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return {"model": model, "flags": [f for f in FEATURES + ARM_FEATURES if f in flags]}


def _memory_bytes(meminfo: Path) -> int | None:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _cpu_quota(cgroup: Path) -> float | None:
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def describe(
    proc: str | os.PathLike = "/proc", cgroup: str | os.PathLike = "/sys/fs/cgroup"
) -> dict:
    """The machine, as a JSON-ready dict. `cores_usable` is the process's CPU affinity, which on
    a shared machine can be below `cores_logical`; `cpu_quota` is a cgroup v2 CPU limit in
    cores (`/sys/fs/cgroup/cpu.max`), None when there is none; `onednn` whether TensorFlow
    runs its oneDNN kernels in this process (docs/cpus.md)."""
    proc = Path(proc)
    try:
        cpu = parse_cpuinfo((proc / "cpuinfo").read_text())
    except OSError:
        cpu = {"model": None, "flags": []}
    cpu["model"] = cpu["model"] or platform.processor() or platform.machine() or None
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu["model"],
        "cpu_features": cpu["flags"],
        "architecture": platform.machine(),
        "cores_logical": os.cpu_count(),
        "cores_usable": usable,
        "cpu_quota": _cpu_quota(Path(cgroup)),
        "onednn": _keras_internals.onednn_enabled(),
        "memory_bytes": _memory_bytes(proc / "meminfo"),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "packages": _versions(),
    }


__all__ = ["describe", "parse_cpuinfo"]
