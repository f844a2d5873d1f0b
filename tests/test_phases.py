"""Phase timing hooks of the workflows (mialens.workflows.phases)."""

from __future__ import annotations

from mialens.workflows.phases import phase, timed_phases


def test_phases_add_up_inside_and_record_nothing_outside():
    with phase("outside"):
        pass
    with timed_phases() as times:
        for _ in range(2):
            with phase("metrics"):
                sum(range(1000))
        with phase("report"):
            pass
    with phase("after"):
        pass
    assert set(times.wall) == set(times.cpu) == {"metrics", "report"}
    assert all(v >= 0 for v in (*times.wall.values(), *times.cpu.values()))
