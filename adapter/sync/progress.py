"""Progress: a tqdm bar when standard error is a terminal, throttled plain log lines otherwise.

Either way only counts are shown (``push 350/1604``), never keys' contents or patient data.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from adapter.logs import JsonFormatter, RedactingFormatter

__all__ = ["Meter", "Progress", "TqdmLogHandler", "configure_logging"]

log = logging.getLogger("trialbridge.sync")


class Meter(Protocol):
    """Something to report progress to."""

    def __call__(self, n: int) -> None: ...


class Progress:
    """Makes meters: ``with progress.meter("push", total) as step: step(n)``."""

    def __init__(self, bars: bool | None = None, *, every: float = 10.0) -> None:
        self.bars = sys.stderr.isatty() if bars is None else bars
        self.every = every

    @contextmanager
    def meter(self, label: str, total: int | None = None, unit: str = "rec") -> Iterator[Meter]:
        """A meter for one phase; the final count is logged when it closes."""
        done = 0
        if self.bars:
            from tqdm import tqdm

            with tqdm(
                total=total, desc=label, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True
            ) as bar:

                def step(n: int) -> None:
                    nonlocal done
                    done += n
                    bar.update(n)

                yield step
        else:
            last = time.monotonic()

            def step(n: int) -> None:
                nonlocal done, last
                done += n
                if time.monotonic() - last >= self.every:
                    last = time.monotonic()
                    log.info("%s: %d%s", label, done, f"/{total}" if total is not None else "")

            yield step
        log.info("%s: %d%s done", label, done, f"/{total}" if total is not None else "")


class TqdmLogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A log handler that prints above an active tqdm bar instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def configure_logging(verbose: bool = False, bars: bool | None = None, log_format: str = "text") -> Progress:
    """Log ``trialbridge.*`` to standard error (INFO for sync, WARNING for the HTTP client), as text
    or (``log_format="json"``) one JSON object per line (:mod:`adapter.logs`; no bars then)."""
    progress = Progress(False if log_format == "json" else bars)
    handler: logging.Handler = TqdmLogHandler() if progress.bars else logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("trialbridge")
    for old in [h for h in root.handlers if getattr(h, "_trialbridge_sync", False)]:
        root.removeHandler(old)
    handler._trialbridge_sync = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("trialbridge.client").setLevel(logging.INFO if verbose else logging.WARNING)
    return progress
