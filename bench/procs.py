"""CPU time and peak memory of process trees, read from /proc.

A role may fork (PostgreSQL's backends; `hemmon run` if it spreads its pipelines over
processes), so everything is counted over the tree under a root pid: the live
processes' own CPU time plus what reaped children left in their parents' cutime/cstime.
The parsing is pure, the reading is thin.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Stat:
    """What the benchmark needs from /proc/PID/stat: parent and CPU clock ticks (user +
    system of the process itself, and of its reaped children)."""

    ppid: int
    ticks: int
    children_ticks: int


def parse_stat(text: str) -> Stat:
    """Parse /proc/PID/stat; the command name may hold spaces and parentheses, so the
    fields are counted from its last ")"."""
    fields = text.rsplit(")", 1)[1].split()
    # after the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    return Stat(ppid=int(fields[1]), ticks=int(fields[11]) + int(fields[12]),
                children_ticks=int(fields[13]) + int(fields[14]))


def parse_peak_rss_kib(status: str) -> int:
    """VmHWM (peak resident set) in KiB from /proc/PID/status; 0 when absent (a zombie)."""
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def descendants(stats: Mapping[int, Stat], root: int) -> set[int]:
    """`root` and every process below it (those still alive in `stats`)."""
    children: dict[int, list[int]] = {}
    for pid, stat in stats.items():
        children.setdefault(stat.ppid, []).append(pid)
    found = {root} if root in stats else set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def tree_ticks(stats: Mapping[int, Stat], root: int, exclude: Iterable[int] = ()) -> int:
    """CPU ticks of a tree: each live process's own, plus its reaped children's. A pid in
    `exclude` (e.g. the benchmark's own database session) does not count."""
    skip = set(exclude)
    return sum(stats[pid].ticks + stats[pid].children_ticks
               for pid in descendants(stats, root) if pid not in skip)


def read_stats() -> dict[int, Stat]:
    """Every process's Stat now (processes that vanish while reading are left out)."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = parse_stat((entry / "stat").read_text())
            except (OSError, IndexError, ValueError):
                continue
    return stats


def cpu_seconds(root: int, exclude: Iterable[int] = ()) -> float:
    return tree_ticks(read_stats(), root, exclude) / os.sysconf("SC_CLK_TCK")


@dataclass
class PeakRss:
    """The peak resident memory of a tree, summed over its processes: each process's
    VmHWM is kept as seen at every `sample()`, so a process that exits between samples
    still counts with what it last showed. Pages that forked processes share are counted
    in each of them, so for a tree of forks the sum is an upper bound."""

    root: int
    peaks_kib: dict[int, int] = field(default_factory=dict)

    def sample(self) -> None:
        for pid in descendants(read_stats(), self.root):
            try:
                kib = parse_peak_rss_kib(Path(f"/proc/{pid}/status").read_text())
            except OSError:
                continue
            self.peaks_kib[pid] = max(kib, self.peaks_kib.get(pid, 0))

    @property
    def mib(self) -> float:
        return sum(self.peaks_kib.values()) / 1024

    @property
    def processes(self) -> int:
        return len(self.peaks_kib)
