"""A py-spy profile of a process tree during a timed window (`--profile`), and where its
time went: the share of samples each function was on the stack for.

py-spy is not a dependency: `.venv/bin/pip install py-spy` first. It samples from its own
process, but on a small machine it competes for the cores: the figures of a profiled run
are not the benchmark's figures.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    return found


def start(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """Sample `pid` and its subprocesses into `out` (folded stacks) until `stop`. A process
    just spawned may not have its interpreter up yet: py-spy then gives up, and is tried
    again."""
    for _ in range(20):
        recorder = subprocess.Popen([py_spy(), "record", "--subprocesses", "--format", "raw",
                                     "--output", str(out), "--pid", str(pid)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)
        if recorder.poll() is None:
            return recorder
    raise RuntimeError(f"py-spy could not attach to {pid}")


def stop(recorder: subprocess.Popen[bytes]) -> None:
    recorder.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
    try:
        recorder.wait(60)
    except subprocess.TimeoutExpired:
        recorder.kill()
        recorder.wait(10)


def frame_name(frame: str) -> str:
    """`load_series (hemmon/rules/storage.py:42)` -> `load_series (rules/storage.py)`:
    one name per function, whatever line it was on; the path shortened to its last two
    parts."""
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = "/".join(match["file"].split("/")[-2:])
    return f"{match['function']} ({path})"


def inclusive_shares(folded: str, top: int = 15) -> list[tuple[str, float]]:
    """The `top` functions by the share of samples they were on the stack for (counted
    once per sample however deep they recur), from py-spy's raw folded stacks. The
    samples are from the process's start: its imports are in the total, not in the list."""
    on_stack: Counter[str] = Counter()
    total = 0
    for line in folded.splitlines():
        match = _LINE.match(line.strip())
        if not match:
            continue
        count = int(match["count"])
        total += count
        for name in {frame_name(f) for f in match["stack"].split(";")}:
            on_stack[name] += count
    if not total:
        return []
    boring = ("process ", "<module>", "_run_module_as_main", "_run_code", "_bootstrap")
    ranked = [(name, n / total) for name, n in on_stack.most_common()
              if not name.startswith(boring) and " (threading.py)" not in name
              and "(<frozen " not in name]  # imports at start-up
    return ranked[:top]
