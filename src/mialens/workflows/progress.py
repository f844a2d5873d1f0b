"""Progress of an audit's stages (training, attacks) for people watching it.

A stage reports ``hook(stage, done, total, note)``: ``done`` of ``total`` units (for
training, model-epochs, so the bar moves every epoch rather than once per model), and
a short ``note`` such as ``"3/16 models"``. On a terminal a rich bar shows it;
otherwise (a log file, CI, a notebook's captured output) a log line is written when a
stage ends and at most every :data:`LOG_INTERVAL` seconds in between, so a long audit
writes a few lines, not one per epoch.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

log = logging.getLogger(__name__)

ProgressHook = Callable[[str, float, float, str], None]
LOG_INTERVAL = 30.0
"""Least seconds between two log lines of one stage (when stdout is not a terminal)."""


class LogProgress:
    """A :data:`ProgressHook` that logs a stage's progress at most every ``interval``
    seconds, and once when it completes."""

    def __init__(self, interval: float = LOG_INTERVAL, clock=time.monotonic) -> None:
        self.interval, self.clock = interval, clock
        self.started: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.finished: set[str] = set()

    def __call__(self, stage: str, done: float, total: float, note: str = "") -> None:
        now = self.clock()
        start = self.started.setdefault(stage, now)
        complete = done >= total
        if stage in self.finished or not (
            complete or now - self.last.get(stage, start) >= self.interval
        ):
            return
        self.last[stage] = now
        if complete:
            self.finished.add(stage)
        percent = 100.0 * done / total if total else 100.0
        log.info("%s: %.0f%%%s, %.0f s", stage, percent, f" ({note})" if note else "", now - start)


class _BarProgress:
    """A :data:`ProgressHook` drawing one rich bar per stage."""

    def __init__(self, bar: Progress) -> None:
        self.bar, self.tasks = bar, {}

    def __call__(self, stage: str, done: float, total: float, note: str = "") -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.bar.add_task(stage, total=total, note=note)
        self.bar.update(self.tasks[stage], completed=done, total=total, note=note)


@contextmanager
def progress_hook(progress: bool | ProgressHook) -> Iterator[ProgressHook | None]:
    """The hook for ``progress``: None when False, the callable itself when one is given,
    else a rich bar on a terminal and :class:`LogProgress` otherwise."""
    if progress is False:
        yield None
    elif callable(progress):
        yield progress
    elif not sys.stdout.isatty():
        yield LogProgress()
    else:
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, transient=False) as bar:
            yield _BarProgress(bar)


class TrainingProgress:
    """Turns per-epoch and per-model events of the audit's trainers into the
    ``models`` stage: each model counts ``epochs + 1`` units, one per epoch and one for
    its logits; a finished model (trained, stopped early, or reused from the cache)
    counts all of them, so the stage completes only when every model is done."""

    def __init__(self, hook: ProgressHook, num_models: int, epochs: int) -> None:
        self.hook, self.epochs = hook, epochs
        self.done = [0] * num_models
        self.finished: set[int] = set()
        self._emit()

    def epoch(self, models: list[int], epoch: int) -> None:
        for k in models:
            if k not in self.finished:
                self.done[k] = epoch
        self._emit()

    def model_done(self, k: int) -> None:
        self.finished.add(k)
        self.done[k] = self.epochs + 1
        self._emit()

    def _emit(self) -> None:
        n = len(self.done)
        note = f"{len(self.finished)}/{n} models"
        self.hook("models", sum(self.done), n * (self.epochs + 1), note)


def step_counter(hook: ProgressHook | None, stage: str, total: int) -> Callable[[], None] | None:
    """An ``on_step`` callback that counts ``total`` steps of ``stage`` into ``hook``."""
    if hook is None:
        return None
    done = [0]
    hook(stage, 0, total, "")

    def step() -> None:
        done[0] += 1
        hook(stage, done[0], total, "")

    return step
