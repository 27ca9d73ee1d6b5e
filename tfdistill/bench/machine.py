"""What machine a benchmark ran on: CPU model and features, cores, memory, library versions."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

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


def describe(proc: str | os.PathLike = "/proc") -> dict:
    """The machine, as a JSON-ready dict. `cores_usable` is the process's CPU affinity (what a
    benchmark can use), which on a shared or containerised machine is below `cores_logical`."""
    proc = Path(proc)
    try:
        cpu = parse_cpuinfo((proc / "cpuinfo").read_text())
    except OSError:
        cpu = {"model": platform.processor() or None, "flags": []}
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu["model"],
        "cpu_features": cpu["flags"],
        "architecture": platform.machine(),
        "cores_logical": os.cpu_count(),
        "cores_usable": usable,
        "memory_bytes": _memory_bytes(proc / "meminfo"),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "packages": _versions(),
    }


__all__ = ["describe", "parse_cpuinfo"]
