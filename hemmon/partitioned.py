"""`hemmon run` on every core: pipeline processes, each owning the patients of its buckets.

The receiving process keeps the MQTT client (and the inbox and the sweeps); it hands each
batch's messages to the pipeline process that owns their patient (a stable hash of the
patient id, as the distributed runner keys its records), so one patient's readings are
never evaluated by two processes at once, and each process holds its own patients' series
in memory. A message is acknowledged to the broker only when the process that took it has
committed it. A pipeline process that dies is started again and given the parts it had
not finished; the idempotent sinks make a second delivery harmless. If the receiver dies,
its pipeline processes stop, and the broker delivers what was not acknowledged again.

Metrics of all processes are summed by prometheus_client's multiprocess mode
(PROMETHEUS_MULTIPROC_DIR, set by `hemmon run` before any metric exists).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import signal
import threading
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from multiprocessing.context import SpawnProcess
from typing import Any
from zoneinfo import ZoneInfo

from hemmon.ingest.model import Device
from hemmon.ingest.topics import PREFIX

from .core import Message, Reply

log = logging.getLogger(__name__)
Done = Callable[[int, list[Reply]], None]
"""Called with a part's id and its feedback once its pipeline process committed it."""


def owner(topic: str, devices: Mapping[str, Device], processes: int) -> int:
    """The pipeline process for a message: by its device's patient, else by the device
    (an unknown device: any process can keep its rejection), else by the topic."""
    parts = topic.split("/")
    device = parts[3] if len(parts) >= 4 and "/".join(parts[:3]) == PREFIX else topic
    known = devices.get(device)
    key = known.patient_id if known is not None else device
    return zlib.crc32(key.encode()) % processes


@dataclass(frozen=True, slots=True)
class ChildSettings:
    database_url: str
    zone: str
    escalate_after: timedelta
    log_level: str


def _child(index: int, settings: ChildSettings, inbox: Any, outbox: Any) -> None:
    """A pipeline process: parts in, committed, their feedback out; until told to stop or
    its parent is gone."""
    from .runner import BatchWorker

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the receiver stops it, in order
    logging.basicConfig(level=settings.log_level.upper(),
                        format=f"%(asctime)s %(levelname)s %(name)s[pipeline-{index}]:"
                               " %(message)s")
    parent = os.getppid()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    worker = BatchWorker(settings.database_url, escalate_after=settings.escalate_after,
                         zone=ZoneInfo(settings.zone), stop=stopping)
    while not stopping.is_set():
        try:
            item = inbox.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent:
                return  # the receiver died: what we had is not acknowledged, it comes again
            continue
        if item is None:
            break
        part_id, messages = item
        replies = worker.process(messages)
        if replies is None:
            break
        outbox.put((part_id, replies))
    worker.close()


@dataclass
class _Slot:
    process: SpawnProcess
    inbox: Any
    outbox: Any
    pending: dict[int, list[Message]] = field(default_factory=dict)
    """Parts sent and not finished, in the order sent."""


class PipelinePool:
    """The pipeline processes and, for each, a thread in the receiver that takes its
    results and starts it again when it dies."""

    def __init__(self, count: int, settings: ChildSettings, done: Done) -> None:
        self.count = count
        self._settings = settings
        self._done = done
        self._context = multiprocessing.get_context("spawn")
        self._slots: list[_Slot] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.restarts = 0

    def start(self) -> None:
        for index in range(self.count):
            self._slots.append(self._spawn(index))
            thread = threading.Thread(target=self._collect, args=(index,),
                                      name=f"hemmon-pipeline-{index}-results", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _spawn(self, index: int) -> _Slot:
        inbox, outbox = self._context.Queue(), self._context.Queue()
        process = self._context.Process(target=_child, name=f"hemmon-pipeline-{index}",
                                        args=(index, self._settings, inbox, outbox),
                                        daemon=True)
        process.start()
        return _Slot(process, inbox, outbox)

    @property
    def alive(self) -> bool:
        return all(slot.process.is_alive() for slot in self._slots)

    def pids(self) -> list[int]:
        return [slot.process.pid or 0 for slot in self._slots]

    def submit(self, index: int, part_id: int, messages: Sequence[Message]) -> None:
        with self._lock:
            slot = self._slots[index]
            slot.pending[part_id] = list(messages)
            slot.inbox.put((part_id, list(messages)))

    def _collect(self, index: int) -> None:
        while not self._stopping.is_set():
            slot = self._slots[index]
            try:
                part_id, replies = slot.outbox.get(timeout=0.5)
            except queue.Empty:
                if not slot.process.is_alive() and not self._stopping.is_set():
                    self._restart(index)
                continue
            with self._lock:
                slot.pending.pop(part_id, None)
            self._done(part_id, replies)

    def _restart(self, index: int) -> None:
        """A pipeline process died: a new one gets every part the old one had not
        finished (some may be committed already: storing them again changes nothing)."""
        from prometheus_client import multiprocess

        with self._lock:
            old = self._slots[index]
            log.error("pipeline process %d died (exit code %s); starting it again with its"
                      " %d unfinished batches", index, old.process.exitcode, len(old.pending))
            if old.process.pid is not None and "PROMETHEUS_MULTIPROC_DIR" in os.environ:
                multiprocess.mark_process_dead(old.process.pid)  # type: ignore[no-untyped-call]
            new = self._spawn(index)
            new.pending = old.pending
            for part_id, messages in old.pending.items():
                new.inbox.put((part_id, messages))
            self._slots[index] = new
            self.restarts += 1

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        for slot in self._slots:
            with contextlib.suppress(OSError, ValueError):  # a queue already closed
                slot.inbox.put(None)
        for slot in self._slots:
            slot.process.join(timeout)
            if slot.process.is_alive():
                slot.process.terminate()
        for thread in self._threads:
            thread.join(timeout)
