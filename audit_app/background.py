"""Each process's background work: named periodic tasks, each on its own interval.

One runner per app and process runs the spool replay, the retention purge of the
embedded store and the sealer in one daemon thread, and each other *lane* (the log streams'
deliveries, which wait on other people's servers) in a thread of its own, started by the
first request after a fork, so every gunicorn worker has its own. A task's failure is
logged and kept (``/readyz`` shows each task's last run and last error) and it runs again
at its next interval; one task never stops another. Turning one task off (e.g.
``AUDIT_REPLAY_INTERVAL=0``) removes that task and nothing else.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .ids import iso, utcnow

log = logging.getLogger(__name__)
EXTENSION_KEY = "audit_app.background"


@dataclass
class Task:
    name: str
    interval: float
    run: Callable[[], object]
    lane: str = "main"
    due: float = 0.0  # time.monotonic() of the next run; 0: at once
    runs: int = 0
    last_run: str | None = None
    last_error: str | None = None

    def status(self) -> dict:
        return {
            "intervalSeconds": self.interval,
            "lane": self.lane,
            "runs": self.runs,
            "lastRun": self.last_run,
            "lastError": self.last_error,
        }


class BackgroundRunner:
    def __init__(self, *, longest_sleep: float = 5.0):
        self.tasks: dict[str, Task] = {}
        self.longest_sleep = longest_sleep
        self._pid: int | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def add(
        self, name: str, interval: float, run: Callable[[], object], lane: str = "main"
    ) -> None:
        if interval <= 0:
            raise ValueError(f"task {name}: the interval must be positive")
        self.tasks[name] = Task(name, interval, run, lane)

    def ensure_started(self) -> None:
        """Start this process's thread once; after a fork, the child starts its own."""
        if self._pid == os.getpid() or not self.tasks:
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._stop = threading.Event()
            self._threads = []
            for lane in sorted({task.lane for task in self.tasks.values()}):
                thread = threading.Thread(
                    target=self._loop, args=(lane,), name=f"audit-background-{lane}", daemon=True
                )
                thread.start()
                self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._pid == os.getpid():
            for thread in self._threads:
                thread.join(timeout)
        self._pid = None

    def run_due(self, lane: str | None = None) -> float:
        """Run every task (of a lane) that is due; return the seconds until the next one is."""
        tasks = [t for t in self.tasks.values() if lane is None or t.lane == lane]
        for task in tasks:
            if time.monotonic() < task.due:
                continue
            task.due = time.monotonic() + task.interval
            try:
                task.run()
                task.last_error = None
            except Exception as error:
                task.last_error = f"{type(error).__name__}: {error}"
                log.exception("Background task %s failed", task.name)
            task.runs += 1
            task.last_run = iso(utcnow())
        upcoming = min((task.due for task in tasks), default=time.monotonic())
        return max(0.0, upcoming - time.monotonic())

    def status(self) -> dict:
        return {name: task.status() for name, task in self.tasks.items()}

    def _loop(self, lane: str) -> None:
        pid = os.getpid()
        while self._pid == pid and not self._stop.is_set():
            wait = self.run_due(lane)
            self._stop.wait(min(wait, self.longest_sleep))
