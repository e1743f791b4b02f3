"""Background jobs of the service: one directory per job holding its status and its result files.

A job runs in a thread of the worker that accepted it; its status (``running``, ``done``,
``failed``, with progress) is a JSON file rewritten atomically in the job's directory, so every
worker of the service can answer ``GET /jobs/{id}`` and serve the results.  The directories live
under ``COHORT_JOBS_DIR`` (app config; default ``<tmp>/trialbridge-jobs-<uid>``), created 0700 and
their files 0600 (:mod:`adapter.private_files`): they hold patient data.  At most
:data:`MAX_RUNNING` jobs run at once per worker; the oldest finished jobs beyond :data:`KEEP` are
deleted when a new one starts.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import current_app

from adapter.private_files import open_private, private_dir
from mappings.errors import TrialbridgeError

from .errors import RequestError

__all__ = ["Job", "JobStore", "jobs"]

log = logging.getLogger("trialbridge.service")

MAX_RUNNING = 2
KEEP = 50
_ID = re.compile(r"[0-9a-f]{32}")


class Job:
    """One job's directory and status file."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.id = directory.name

    @property
    def status_file(self) -> Path:
        return self.dir / "status.json"

    def status(self) -> dict[str, Any]:
        """The last status written."""
        with self.status_file.open(encoding="utf-8") as f:
            data: dict[str, Any] = json.load(f)
        return data

    def write(self, status: dict[str, Any]) -> None:
        """Replace the status (atomically: readers see the old one or the new one)."""
        part = self.dir / f".status.{threading.get_ident()}.part"
        with open_private(part) as f:
            json.dump(status, f, ensure_ascii=False)
        os.replace(part, self.status_file)

    def update(self, **changes: Any) -> None:
        self.write({**self.status(), **changes})


class JobStore:
    """The jobs under one directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = private_dir(root)
        self._running = 0
        self._lock = threading.Lock()

    def get(self, job_id: str) -> Job:
        """The job ``job_id`` (404 RequestError when there is none)."""
        if not _ID.fullmatch(job_id) or not (self.root / job_id / "status.json").is_file():
            raise RequestError(f"no job {job_id[:40]!r}", status=404)
        return Job(self.root / job_id)

    def start(self, kind: str, described: dict[str, Any], work: Callable[[Job], dict[str, Any]]) -> Job:
        """Create a job and run ``work(job)`` in a thread; its answer becomes the ``summary``."""
        with self._lock:
            if self._running >= MAX_RUNNING:
                raise RequestError(f"{MAX_RUNNING} jobs are running already; try again later", status=503)
            self._running += 1
        self._prune()
        job = Job(private_dir(self.root / uuid.uuid4().hex))
        job.write(
            {
                "id": job.id,
                "kind": kind,
                "status": "running",
                "created": _now(),
                **described,
                "progress": {"done": 0, "total": None},
            }
        )
        threading.Thread(target=self._run, args=(job, work), name=f"job-{job.id}", daemon=True).start()
        return job

    def _run(self, job: Job, work: Callable[[Job], dict[str, Any]]) -> None:
        try:
            summary = work(job)
            job.update(status="done", finished=_now(), summary=summary)
        except TrialbridgeError as exc:
            job.update(status="failed", finished=_now(), error=" ".join(str(exc).split()))
        except Exception:
            log.exception("job %s failed", job.id)
            job.update(
                status="failed", finished=_now(), error="internal error; the service log has the details"
            )
        finally:
            with self._lock:
                self._running -= 1

    def _prune(self) -> None:
        done = []
        for d in self.root.iterdir():
            try:
                status = Job(d).status()
            except (OSError, ValueError):
                continue
            if status.get("status") != "running":
                done.append((status.get("created", ""), d))
        for _, d in sorted(done)[: max(0, len(done) - KEEP + 1)]:
            shutil.rmtree(d, ignore_errors=True)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


_STORES: dict[str, JobStore] = {}
_STORES_LOCK = threading.Lock()


def jobs() -> JobStore:
    """The job store of the current app (one per directory)."""
    root = current_app.config.get("COHORT_JOBS_DIR") or os.path.join(
        tempfile.gettempdir(), f"trialbridge-jobs-{os.getuid()}"
    )
    with _STORES_LOCK:
        if root not in _STORES:
            _STORES[root] = JobStore(root)
        return _STORES[root]
