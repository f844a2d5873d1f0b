"""How well the query monitor works: false alarms on benign traffic, detection of attacks.

A monitor is only useful if it stays quiet on the traffic of ordinary users and raises
its alarm early in an attack's query stream. Benign traffic is simulated as shuffled
held-out samples (each stream a fresh monitor and a fresh permutation); every attack
stream is one run of a query attack on a random group of candidate samples against a
fresh monitor. The alarm time does not depend on the monitor's action (the queries up
to the alarm are answered either way), so attack streams run with ``flag``: the attack
then issues its natural queries, and how many candidates it had finished when the alarm
came is measured on that stream rather than on one cut short by refusals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mialens.attacks.base import QueryAttack, QueryData, QueryReferences
from mialens.defenses.monitor import MonitorConfig, QueryMonitor
from mialens.errors import DataError
from mialens.seeding import rng
from mialens.targets.adapters import Target, restrict


class MonitorEvaluation(BaseModel):
    """``defenses.monitor``: evaluate the query monitor in front of an undefended target."""

    model_config = ConfigDict(extra="forbid")

    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    attacks: list[str | dict[str, Any]] | None = Field(
        default=None, description="query attacks to detect (default: label_only_attacks)"
    )
    streams: int = Field(default=5, ge=1, description="streams per attack and of benign traffic")
    samples_per_stream: int = Field(default=20, ge=1, description="candidates per attack stream")
    benign_queries: int = Field(default=1000, ge=10, description="queries per benign stream")


def benign_streams(
    target: Target,
    calibration_x: np.ndarray,
    traffic_x: np.ndarray,
    config: MonitorConfig,
    streams: int,
    length: int,
    seed: int,
    batch: int = 50,
) -> dict[str, Any]:
    """False alarms on ``streams`` shuffled streams of ``length`` distinct held-out
    samples (at most all of them).

    Each stream starts a fresh monitor; ``false_alarm_rate`` is the fraction of streams
    with an alarm, ``suspicious_rate`` the mean fraction of queries flagged suspicious.
    """
    if len(traffic_x) == 0:
        raise DataError("the monitor's benign traffic is empty: it needs held-out samples")
    length = min(length, len(traffic_x))  # benign users do not repeat records
    alarms, suspicious = [], []
    draw = rng(seed, "monitor-benign")
    for _ in range(streams):
        stream = traffic_x[draw.permutation(len(traffic_x))[:length]]
        monitor = QueryMonitor(target, calibration_x, config)
        for s in range(0, length, batch):
            monitor.logits(stream[s : s + batch])
        alarms.append(monitor.alarm_at)
        suspicious.append(monitor.suspicious / monitor.queries)
    return {
        "streams": streams,
        "queries_per_stream": length,
        "false_alarms": sum(a is not None for a in alarms),
        "false_alarm_rate": float(np.mean([a is not None for a in alarms])),
        "suspicious_rate": float(np.mean(suspicious)),
        "alarm_at": alarms,
    }


def attack_streams(
    target: Target,
    calibration_x: np.ndarray,
    attack: QueryAttack,
    data: QueryData,
    refs: QueryReferences | None,
    config: MonitorConfig,
    streams: int,
    samples_per_stream: int,
    seed: int,
) -> dict[str, Any]:
    """Detection of ``attack``: ``streams`` runs, each on ``samples_per_stream`` random
    candidates of ``data`` (disjoint while there are enough) against a fresh monitor.

    ``detection_rate`` is the fraction of runs with an alarm; ``delay`` the queries
    answered before it (median and max over detected runs), also in candidates' worth
    of queries (``samples_before_alarm``: how many candidates the attack had finished,
    on average, when the alarm came).
    """
    fitted = attack.clone().fit(refs if attack.needs.references != "none" else None)
    config = config.model_copy(update={"action": "flag"})
    draw = rng(seed, "monitor-attack", attack.name)
    n = len(data.labels)
    size = min(samples_per_stream, n)
    order = draw.permutation(n)
    alarms, queries = [], []
    for s in range(streams):
        start = (s * size) % n
        idx = order[start : start + size]
        if len(idx) < size:
            idx = draw.choice(n, size, replace=False)
        sub = replace(data, x=data.x[idx], labels=data.labels[idx])
        monitor = QueryMonitor(target, calibration_x, config)
        view = restrict(monitor, attack.threat_model)
        if fitted.needs.target_step:  # its queries reach the monitor too
            fitted.prepare(view, sub)
        fitted.score(view, sub)
        alarms.append(monitor.alarm_at)
        queries.append(monitor.queries)
    detected = [a for a in alarms if a is not None]
    per_sample = float(np.mean(queries)) / size
    return {
        "threat_model": attack.threat_model,
        "streams": streams,
        "samples_per_stream": size,
        "queries_per_stream": float(np.mean(queries)),
        "detection_rate": len(detected) / streams,
        "delay_queries": (
            {"median": float(np.median(detected)), "max": int(max(detected))} if detected else None
        ),
        "samples_before_alarm": float(np.median(detected)) / per_sample if detected else None,
        "alarm_at": alarms,
    }


def evaluate_monitor(
    target: Target,
    calibration_x: np.ndarray,
    traffic_x: np.ndarray,
    attacks: Sequence[QueryAttack],
    data: QueryData,
    refs: QueryReferences | None,
    settings: MonitorEvaluation,
    seed: int,
) -> dict[str, Any]:
    """The monitor's false alarms on benign traffic and its detection of every attack;
    the monitor is calibrated on ``calibration_x`` (the defender's own data)."""
    config = settings.monitor
    return {
        "config": config.model_dump(mode="json"),
        "calibration_samples": len(calibration_x),
        "benign": benign_streams(
            target,
            calibration_x,
            traffic_x,
            config,
            settings.streams,
            settings.benign_queries,
            seed,
        ),
        "attacks": {
            a.name: attack_streams(
                target,
                calibration_x,
                a,
                data,
                refs,
                config,
                settings.streams,
                settings.samples_per_stream,
                seed,
            )
            for a in attacks
        },
    }
