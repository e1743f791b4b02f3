"""``trialbridge cohort --study NCT --server S [--out DIR] [--as-of DATE] [--tag SYSTEM|CODE]``.

Screens every patient of the server for the study (:func:`adapter.cohort.screen`), writes the
candidates (CSV, NDJSON), the funnel (JSON) and the HTML report into ``--out`` (default
``out/cohort-<NCT>``; :mod:`adapter.cohort_report`), and prints the funnel as a table.  Progress
goes to standard error.  Exit 0 whatever the counts; bad input exits 2 with one line.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from typing import Any

from mappings.errors import InputError

from .client import FhirClient
from .cohort import screen
from .cohort_report import CohortWriter
from .config import ServerConfig
from .prescreen import check_nct

__all__ = ["add_cohort_arguments", "format_funnel", "run_cohort"]


def add_cohort_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``cohort`` beyond --study and the server options."""
    p.add_argument("--out", metavar="DIR", help="directory for the result files (default out/cohort-<NCT>)")
    p.add_argument("--as-of", metavar="YYYY-MM-DD", help="evaluation date (default: today)")
    p.add_argument(
        "--tag",
        metavar="SYSTEM|CODE",
        help="screen only the Patients with this meta.tag (default: every patient)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress on standard error")


def _as_of(value: str | None) -> datetime.date | None:
    try:
        return datetime.date.fromisoformat(value) if value else None
    except ValueError:
        raise InputError(f"--as-of: {value!r} is not a date (YYYY-MM-DD)", field="--as-of") from None


def _tag(value: str | None) -> str | None:
    if value is None:
        return None
    system, bar, code = value.partition("|")
    if not bar or not code or any(ch.isspace() for ch in value):
        raise InputError(f"--tag: {value[:80]!r} is not SYSTEM|CODE", field="--tag")
    return value


def format_funnel(summary: dict[str, Any]) -> str:
    """The funnel as a plain-text table, with the counts."""
    lines = [
        f"{summary['study']} on {summary['server']} ({summary['fhirVersion']}), as of {summary['asOf']}: "
        f"{summary['patients']} patients, {summary['ruledOutByServer']} ruled out by the server's search, "
        f"{summary['evaluated']} evaluated, {summary['candidates']} candidates",
        "",
        f"{'#':>3} {'criterion':20} {'dropped':>8} {'remaining':>9} {'review':>7}",
    ]
    for n, row in enumerate(summary["funnel"], 1):
        lines.append(
            f"{n:>3} {row['criterion']:20} {row['dropped']:>8} {row['remaining']:>9} {row['review']:>7}"
        )
    verdicts = ", ".join(f"{k}: {v}" for k, v in summary["verdicts"].items())
    lines += ["", f"verdicts: {verdicts}"]
    lines += [f"note: {line}" for line in summary.get("reread", [])]
    return "\n".join(lines) + "\n"


def run_cohort(args: argparse.Namespace, server: ServerConfig) -> int:
    """Run the screen for the parsed arguments on ``server``."""
    check_nct(args.study)
    as_of, tag = _as_of(args.as_of), _tag(args.tag)
    writer = CohortWriter(args.out or f"out/cohort-{args.study}")

    def progress(done: int, total: int) -> None:
        if not args.quiet:
            print(f"screened {done}/{total}", file=sys.stderr)

    try:
        with FhirClient(server) as client:
            client.check_version()
            result = screen(client, args.study, as_of=as_of, tag=tag, sink=writer, progress=progress)
    except BaseException:
        writer.close()
        raise
    summary = writer.finish(result)
    sys.stdout.write(format_funnel(summary))
    print("files: " + ", ".join(str(writer.path(f)) for f in ("csv", "ndjson", "json", "html")))
    return 0
