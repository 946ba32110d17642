"""Resident memory of the running process, read from /proc (Linux), for the benchmarks' memory figures."""

from __future__ import annotations

from pathlib import Path


def process_memory_mb(field: str = "VmRSS") -> float:
    """`VmRSS` (resident now) or `VmHWM` (peak resident so far) in MB; NaN where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")
