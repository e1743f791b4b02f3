"""The ``trialbridge sync`` sub-command (registered by :func:`add_sync_parser` in :mod:`adapter.cli`).

::

    trialbridge sync --once --config FILE                 one pass
    trialbridge sync --config FILE [--interval SECONDS]   a pass every interval until SIGTERM/SIGINT
    trialbridge sync --report --config FILE               the dead-letter table and outbox counts
    trialbridge sync --retry-dead --config FILE           records the server refused: pending again
                                                          (with the sent records they reference)
    trialbridge sync --once --workers N --config FILE     the push shared by N processes
                                                          (a PostgreSQL state: state = "postgresql://...")

Progress goes to standard error (a bar on a terminal, log lines otherwise); the final outbox
counts to standard output.  Exit status (:data:`EXIT_CODES`): 0 when the (last) pass completed
and the server refused nothing during the run (rows the CSV reader refused are in the dead letter
but do not change the status); 3 when it completed but the server refused records, now in the
dead letter (``--report`` lists them); 1 when it stopped on a failure with records still pending
(they go out on the next pass), or for any error :mod:`adapter.cli` reports (bad configuration,
server unreachable, study missing); 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from adapter.errors import ConfigError

from .config import SyncConfig, load_sync_jobs
from .heal import retry_dead
from .progress import configure_logging
from .report import write_report
from .runner import run, run_servers
from .state import is_postgresql, open_state

__all__ = ["EXIT_CODES", "EXIT_DEAD_LETTERS", "add_sync_parser", "cmd_sync"]

#: A run that completed, but the server refused records (now in the dead letter): schedulers notice.
EXIT_DEAD_LETTERS = 3
EXIT_CODES = {
    0: "the run completed; the server refused nothing",
    1: "failed: stopped with records pending, or an error (configuration, server unreachable, study missing)",
    2: "bad input (arguments)",
    EXIT_DEAD_LETTERS: "the run completed, but the server refused records: see --report",
}


def add_sync_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    """Register ``sync`` on the ``trialbridge`` sub-command parser."""
    p = sub.add_parser(
        "sync",
        help="push a study's enrolments and lab results to a FHIR server, pull what changed (once or on an "
        "interval)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit status:\n" + "\n".join(f"  {code}  {text}" for code, text in sorted(EXIT_CODES.items())),
    )
    p.add_argument("--config", required=True, metavar="FILE", help="the sync job file (TOML)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="one pass, then exit")
    mode.add_argument(
        "--interval",
        type=float,
        metavar="SECONDS",
        help="seconds between passes (default: the config's interval)",
    )
    mode.add_argument("--report", action="store_true", help="list the dead letter and the outbox counts")
    mode.add_argument(
        "--retry-dead",
        action="store_true",
        help="put every record the server refused back in the outbox, with the sent records they "
        "reference (a server that lost them gets them again), then exit",
    )
    p.add_argument("--workers", type=_count, default=1, metavar="N",
                   help="worker processes sharing the push (needs a PostgreSQL state; default 1)")
    p.add_argument("--passes", type=int, metavar="N", help="with --interval: stop after N passes")
    p.add_argument("--state", metavar="FILE", help="state database (overrides the config)")
    p.add_argument("--output", metavar="DIR", help="pull output directory (overrides the config)")
    p.add_argument("--all", action="store_true", help="with --report: include superseded dead letters")
    p.add_argument("--no-progress", action="store_true", help="plain log lines even on a terminal")
    p.add_argument("--log-format", choices=("text", "json"), default="text",
                   help="log lines on standard error: text (default) or one JSON object per line")
    p.add_argument("-v", "--verbose", action="store_true", help="also log each HTTP request (method, path)")
    p.set_defaults(func=cmd_sync)
    return p


def _count(text: str) -> int:
    """A worker count: a whole number from 1 (argparse answers anything else with exit 2)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, not {text!r}")
    return value


def cmd_sync(args: argparse.Namespace) -> int:
    """Run the ``sync`` sub-command (a job per target server: one, or several hospitals)."""
    jobs = load_sync_jobs(args.config, state=args.state, output=args.output)
    if args.report or args.retry_dead:
        for config in jobs:
            if len(jobs) > 1:
                print(f"# server {config.server.name}")
            _report_or_retry(config, args)
        return 0
    progress = configure_logging(
        args.verbose, bars=False if args.no_progress else None, log_format=args.log_format
    )
    if len(jobs) == 1:
        results = [run(jobs[0], once=args.once, interval=args.interval, passes=args.passes,
                       progress=progress, workers=args.workers)]
    else:
        results = run_servers(jobs, once=args.once, interval=args.interval, passes=args.passes,
                              progress=progress, workers=args.workers)
    for config, last in zip(jobs, results, strict=True):
        if last.counts is not None:
            where = f" on {config.server.name}" if len(jobs) > 1 else ""
            print(f"{config.study}{where}: {last.counts}")
    if not all(last.ok for last in results):
        return 1
    return EXIT_DEAD_LETTERS if any(last.dead_in_run for last in results) else 0


def _report_or_retry(config: SyncConfig, args: argparse.Namespace) -> None:
    if not is_postgresql(config.state) and not Path(config.state).exists():
        raise ConfigError(f"no state database at {config.state}: nothing has run yet")
    # --report only reads: it takes no lock, so it works while a sync runs (WAL readers never block).
    with open_state(config.state, config.state_namespace, lock=not args.report) as outbox:
        if args.report:
            write_report(outbox, sys.stdout, include_superseded=args.all)
        else:
            dead, deps = retry_dead(outbox)
            print(f"{dead} record(s) back in the outbox, and {deps} sent record(s) they reference")
