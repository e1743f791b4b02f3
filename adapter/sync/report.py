"""``trialbridge sync --report``: the dead-letter table, one line per record, and the outbox counts.

Each line is ``key<TAB>source<TAB>reason``: the record's business key, where it came from
(``labs.csv:62``) and why it is there -- the reader's message for a refused row, or the server's
status and OperationOutcome issues for a rejected record.  This listing is for the operator who
fixes the data; it goes to standard output, never to the log.  Superseded rows (the key was later
read again with new content) are left out unless asked for.
"""

from __future__ import annotations

from typing import TextIO

from .state import State

__all__ = ["write_report"]


def write_report(outbox: State, out: TextIO, *, include_superseded: bool = False) -> int:
    """Write the report; returns the number of dead-letter lines written."""
    lines = 0
    print("# dead letter: key\tsource\treason", file=out)
    for letter in outbox.dead_letters(include_superseded=include_superseded):
        reason = " ".join(letter.reason.split())
        print(f"{letter.key}\t{letter.source}\t{reason}", file=out)
        lines += 1
    counts = outbox.counts()
    print(
        f"# outbox: pending {counts.pending}, sent {counts.sent}, dead {counts.dead}; "
        f"rows refused by the reader {counts.rejected}; dead-letter lines {lines}",
        file=out,
    )
    return lines
