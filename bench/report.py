"""Benchmark rows, the printed table, and the JSON written under ``bench/results/``."""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Row:
    """One figure next to its same-run baseline; ``ratio`` = value / baseline (higher is better
    when ``higher_is_better``), ``target`` the ratio we aim for; ``detail`` what else to read
    (e.g. latency percentiles), printed under the row."""

    name: str
    value: float
    unit: str
    baseline_name: str
    baseline: float
    target: float | None = None
    higher_is_better: bool = True
    detail: str = ""

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("nan")

    @property
    def meets_target(self) -> bool | None:
        if self.target is None:
            return None
        return self.ratio >= self.target if self.higher_is_better else self.ratio <= self.target


def rate(func: Callable[[], int], seconds: float = 2.5, rounds: int = 5) -> float:
    """Best-of-``rounds`` items per second of ``func`` (which returns how many items it did)."""
    best = 0.0
    for _ in range(rounds):
        done, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds / rounds:
            done += func()
        best = max(best, done / elapsed)
    return best


def round_rates(funcs: list[Callable[[], int]], seconds: float = 2.5, rounds: int = 9) -> list[list[float]]:
    """Items per second of each of ``funcs`` in each of ``rounds`` rounds, measured in turns (round 1
    of each, then round 2 of each...), so that a figure and its baseline see the same machine: a busy
    moment costs each of them a round, not one of them its whole measurement."""
    per_round: list[list[float]] = [[] for _ in funcs]
    for _ in range(rounds):
        for i, func in enumerate(funcs):
            done, start = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - start) < seconds / rounds:
                done += func()
            per_round[i].append(done / elapsed)
    return per_round


def rates(funcs: list[Callable[[], int]], seconds: float = 2.5, rounds: int = 9) -> list[float]:
    """Best-of-``rounds`` items per second of each of ``funcs``, measured in turns
    (:func:`round_rates`)."""
    return [max(r) for r in round_rates(funcs, seconds, rounds)]


def spread(values: list[float], baselines: list[float]) -> str:
    """The ratio of each round's value to the same round's baseline: min / median / max over the
    rounds, the noise to read next to a best-of ratio."""
    ratios = sorted(v / b for v, b in zip(values, baselines) if b)
    if not ratios:
        return ""
    return (f"ratio per round (n={len(ratios)}): min {ratios[0]:.3f} / median "
            f"{statistics.median(ratios):.3f} / max {ratios[-1]:.3f}")


def print_table(rows: list[Row]) -> None:
    header = f"{'figure':44} {'value':>14} {'baseline (same run)':>36} {'ratio':>8} {'target':>8}"
    print(header)
    print("-" * len(header))
    for r in rows:
        target = "" if r.target is None else (("≥" if r.higher_is_better else "≤") + f"{r.target:g}")
        mark = {True: " ok", False: " MISS", None: ""}[r.meets_target]
        print(
            f"{r.name:44} {r.value:>10.4g} {r.unit:<3} {r.baseline_name:>24} {r.baseline:>10.4g} "
            f"{r.ratio:>8.3f} {target:>8}{mark}"
        )
        if r.detail:
            print(f"    {r.detail}")


def write_json(rows: list[Row]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    path = RESULTS / f"bench-{stamp}.json"
    data = {
        "when": stamp,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "rows": [{**asdict(r), "ratio": r.ratio, "meets_target": r.meets_target} for r in rows],
    }
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path
