"""The audit page's figures drawn by a second Python process, while the audit scores,
measures and writes its tables: matplotlib's import and the drawing (a second or two
whatever the audit's size, as they draw summaries) then cost no wall time on a machine
with a core to spare.

    worker = FigureWorker()          # starts the process; it imports matplotlib
    ...                              # the audit scores and measures
    worker.submit(audit_figures(result))
    ...                              # the audit writes its tables
    pngs = worker.pngs()             # the PNG bytes, as plots.audit_pngs draws them

The process runs this module with the parent's ``sys.path`` (as multiprocessing's spawn
does), so it draws with the same mialens and matplotlib. It reads one frame (8-byte
length, then the figures' JSON, :meth:`AuditFigures.to_json`) and answers with the PNGs
as base64 in JSON. Nothing is pickled. If the process fails, the figures are drawn in
this process (logged), so a finished audit never loses its report to the worker.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from mialens.report.figure_data import AuditFigures

log = logging.getLogger(__name__)

MIN_SCORES = 200_000
"""Scores (targets x samples x attacks) from which an audit draws in a worker: below,
scoring, metrics and tables take less time than the worker's start (a Python process
importing matplotlib, about 0.7 CPU seconds), so drawing in the audit's own process is
cheaper and no slower."""
_TIMEOUT_S = 600
_LAUNCH = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "from mialens.report.figure_worker import main; main()"
)


def worth_a_worker(n_scores: int) -> bool:
    """Whether an audit of ``n_scores`` scores draws in a worker: when it has that many
    and this process may run on at least two cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return n_scores >= MIN_SCORES and (cores or 1) >= 2


@contextmanager
def figure_worker(n_scores: int) -> Iterator[FigureWorker | None]:
    """A :class:`FigureWorker` for an audit of ``n_scores`` scores when one is worth it
    (:func:`worth_a_worker`, else None), ended on leaving the block."""
    worker = None
    if worth_a_worker(n_scores):
        try:
            worker = FigureWorker()
        except OSError as err:  # no interpreter to start: the figures are drawn here
            log.debug("figure worker not started: %s", err)
    try:
        yield worker
    finally:
        if worker is not None:
            worker.close()


class FigureWorker:
    """A process that draws one audit page's figures (see the module docstring)."""

    def __init__(self) -> None:
        self._figures: AuditFigures | None = None
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _LAUNCH, json.dumps(sys.path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def submit(self, figures: AuditFigures) -> None:
        """Send the figures to draw (once)."""
        self._figures = figures
        data = json.dumps(figures.to_json()).encode()
        try:
            self._proc.stdin.write(len(data).to_bytes(8, "big") + data)
            self._proc.stdin.flush()
        except OSError as err:  # the process died: pngs() draws here
            log.debug("figure worker: %s", err)

    def pngs(self) -> dict[str, bytes]:
        """The submitted figures as PNG bytes by caption name: the worker's, or drawn in
        this process if the worker failed."""
        if self._figures is None:
            raise RuntimeError("FigureWorker.pngs() before submit()")
        try:
            out, err = self._proc.communicate(timeout=_TIMEOUT_S)
            if self._proc.returncode == 0:
                return {k: base64.b64decode(v) for k, v in json.loads(out).items()}
            reason = err.decode(errors="replace").strip().splitlines()[-5:]
        except (subprocess.TimeoutExpired, OSError, ValueError) as exc:
            self.close()
            reason = [repr(exc)]
        log.warning("the figure worker failed, drawing in this process: %s", " | ".join(reason))
        from mialens.report.plots import audit_pngs

        return audit_pngs(self._figures)

    def close(self) -> None:
        """End the process if it still runs (it exits by itself once it has answered, or
        when this process closes its input before submitting)."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            with suppress(OSError):  # a broken pipe's unflushed input
                stream.close()


def main() -> None:
    """The worker's side: import the drawing, read the figures, answer with the PNGs."""
    from mialens.report.plots import audit_pngs

    head = sys.stdin.buffer.read(8)
    if len(head) < 8:  # the audit ended before its figures: nothing to draw
        return
    figures = AuditFigures.from_json(json.loads(sys.stdin.buffer.read(int.from_bytes(head, "big"))))
    pngs = audit_pngs(figures)
    encoded = {name: base64.b64encode(png).decode("ascii") for name, png in pngs.items()}
    sys.stdout.buffer.write(json.dumps(encoded).encode())
