"""Generate a reproducible service-desk export: N tickets as JSONL, and what changed since.

The benchmark loads the same records several ways, so every file here is derived from
one seed: the same ``--rows`` and ``--seed`` give byte-identical files on any machine.

- ``tickets_N.jsonl``: the base export, ticket ids 1..N, one JSON object per line.
- ``tickets_N.csv``: the same records as CSV for ``psql \\copy`` (timestamps as text with
  their offset, ``tags`` as JSON text, an empty unquoted field for null).
- ``changes_N.jsonl`` / ``changes_N.csv``: 10 % of the ids modified (status, updated_at,
  sometimes priority, assignee and resolved_at) interleaved with 10 % new ids.
- ``manifest_N.json``: the parameters and the counts a merge of the change file must report.

Records are written as they are made (nothing holds N records in memory), so 5M rows
cost the same memory as 1,000.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import csv
import io
import json
import multiprocessing
import os
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

FIELDS = (
    "ticket_id",
    "subject",
    "description",
    "status",
    "priority",
    "assignee",
    "channel",
    "created_at",
    "updated_at",
    "resolved_at",
    "score",
    "is_escalated",
    "tags",
)
"""Column order of the CSV files and of the reference table."""

STATUSES = ("open", "pending", "resolved", "closed")
_STATUS_CUM_WEIGHTS = (20, 35, 65, 100)
_DONE = frozenset(("resolved", "closed"))
CHANNELS = ("email", "phone", "web", "chat")
TAGS = (
    "vpn", "email", "printer", "laptop", "password", "network", "billing", "onboarding",
    "hardware", "software", "access", "mobile", "wifi", "license", "security", "sso",
)  # fmt: skip
_ASSIGNEES = (
    "Amina Njoroge", "José Álvarez", "Zoë Martin", "Li Wei", "Ólafur Jónsson",
    "Priya Raman", "Tomasz Wiśniewski", "Fatima Haddad", "Kenji Sato", "Grace O'Neill",
    "Lars Østergaard", "Chidi Okafor", "Marta Kowalczyk", "Noah Fischer", "Sofía Reyes",
)  # fmt: skip
_PROBLEMS = (
    "Cannot log in to", "Slow response from", "Error when opening", "Request access to",
    "Crash on start of", "Sync fails for", "Password reset for", "Update broke",
)  # fmt: skip
_OBJECTS = (
    "VPN client", "shared mailbox", "HR portal", "invoice system", "team drive",
    "CRM", "laptop dock", "printer on floor 3", "expense app", "wiki",
)  # fmt: skip
_SENTENCES = (
    "The user reports that the problem started after this morning's update.",
    "Restarting the machine did not help, and the error comes back within minutes.",
    'The message says "connection reset by peer" and then the window closes.',
    "It affects about a dozen people in the finance team, all on the same floor.",
    "We checked the account: it is active, not locked, and the licence is assigned.",
    "A workaround is to use the web version, but it is slow and misses some features.",
    "Logs attached; see lines 120-180 for the stack trace.\nNothing else changed.",
    "The customer asks for an update before Friday, since month-end closing depends on it.",
    "Escalated by the team lead; priority may need to go up if more users are affected.",
    "Steps: open the app, choose File > Export, pick CSV; it hangs at 99 %.",
    "Could not reproduce on a clean profile; the cache may be corrupted.",
    "Vendor ticket opened (ref. VND-20931); waiting for their answer.",
    "Cost centre 4410, approved by the manager by e-mail on Monday.",
    "Same issue as last month, which was closed without a root cause.",
)
_OFFSETS = tuple(timezone(timedelta(minutes=m)) for m in (0, 60, 120, 330, -300, -240, 540))
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
_SPAN_SECONDS = 2 * 365 * 24 * 3600
_CHANGE_SHARE = 10
"""One id in ten is modified, and one new id per ten is added."""


def _stamp(moment: datetime, rng: random.Random) -> str:
    """ISO 8601 in a random local offset, seconds precision: ``2026-03-01T10:15:00+02:00``."""
    return moment.astimezone(rng.choice(_OFFSETS)).isoformat()


def make_ticket(ticket_id: int, rng: random.Random) -> dict[str, Any]:
    """One ticket; all of its randomness comes from ``rng``, in a fixed order."""
    created = _EPOCH + timedelta(seconds=rng.randrange(_SPAN_SECONDS))
    updated = created + timedelta(seconds=rng.randrange(30 * 24 * 3600))
    status = rng.choices(STATUSES, cum_weights=_STATUS_CUM_WEIGHTS)[0]
    return {
        "ticket_id": ticket_id,
        "subject": f"{rng.choice(_PROBLEMS)} {rng.choice(_OBJECTS)}",
        "description": " ".join(rng.choices(_SENTENCES, k=rng.randint(3, 6))),
        "status": status,
        "priority": rng.randint(1, 5),
        "assignee": None if rng.random() < 0.2 else rng.choice(_ASSIGNEES),  # noqa: PLR2004
        "channel": rng.choice(CHANNELS),
        "created_at": _stamp(created, rng),
        "updated_at": _stamp(updated, rng),
        "resolved_at": _stamp(updated, rng) if status in _DONE else None,
        "score": round(rng.uniform(0, 10), 3),
        "is_escalated": rng.random() < 0.1,  # noqa: PLR2004
        "tags": rng.sample(TAGS, rng.randint(0, 4)),
    }


def modify(ticket: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """The ticket as a later export shows it: new status and a later ``updated_at``.

    ``updated_at`` always moves forward, so every modified record really differs.
    """
    changed = dict(ticket)
    updated = datetime.fromisoformat(ticket["updated_at"]) + timedelta(
        seconds=rng.randrange(3600, 10 * 24 * 3600)
    )
    status = rng.choice([s for s in STATUSES if s != ticket["status"]])
    changed["status"] = status
    changed["updated_at"] = _stamp(updated, rng)
    changed["resolved_at"] = _stamp(updated, rng) if status in _DONE else None
    if rng.random() < 0.3:  # noqa: PLR2004
        changed["priority"] = rng.randint(1, 5)
    if rng.random() < 0.3:  # noqa: PLR2004
        changed["assignee"] = rng.choice(_ASSIGNEES)
    return changed


def _csv_row(ticket: dict[str, Any]) -> list[object]:
    """CSV cells as PostgreSQL's CSV COPY reads them: null is an empty unquoted field."""
    return [
        *(ticket[f] for f in FIELDS[:-3]),
        repr(ticket["score"]),
        "true" if ticket["is_escalated"] else "false",
        json.dumps(ticket["tags"], ensure_ascii=False, separators=(",", ":")),
    ]


class _Text:
    """A chunk's JSONL lines and, optionally, the same records as CSV rows, in memory."""

    def __init__(self, *, csv_too: bool) -> None:
        self.jsonl = io.StringIO()
        self.csv: io.StringIO | None = io.StringIO() if csv_too else None
        self._csv = csv.writer(self.csv, lineterminator="\n") if self.csv is not None else None

    def write(self, ticket: dict[str, Any]) -> None:
        self.jsonl.write(json.dumps(ticket, ensure_ascii=False, separators=(",", ":")))
        self.jsonl.write("\n")
        if self._csv is not None:
            self._csv.writerow(_csv_row(ticket))

    def parts(self) -> tuple[str, str]:
        return self.jsonl.getvalue(), self.csv.getvalue() if self.csv is not None else ""


@dataclass(frozen=True)
class _Chunk:
    """One slice of ids, made by a worker process with generators seeded by the slice index.

    Seeding per chunk (not per worker) keeps the files identical whatever the number of
    processes; ``first_new_id`` numbers the new tickets as if made in one pass.
    """

    seed: int
    index: int
    first_id: int
    last_id: int
    changed: tuple[int, ...]
    first_new_id: int
    csv_too: bool


def _make_chunk(chunk: _Chunk) -> tuple[str, str, str, str]:
    rng = random.Random(f"{chunk.seed}:base:{chunk.index}")
    change_rng = random.Random(f"{chunk.seed}:change:{chunk.index}")
    new_rng = random.Random(f"{chunk.seed}:new:{chunk.index}")
    changed = set(chunk.changed)
    base, delta = _Text(csv_too=chunk.csv_too), _Text(csv_too=chunk.csv_too)
    new_id = chunk.first_new_id
    for ticket_id in range(chunk.first_id, chunk.last_id + 1):
        ticket = make_ticket(ticket_id, rng)
        base.write(ticket)
        if ticket_id in changed:
            # Interleave: each modified ticket is followed by one new ticket.
            delta.write(modify(ticket, change_rng))
            delta.write(make_ticket(new_id, new_rng))
            new_id += 1
    return (*base.parts(), *delta.parts())


@dataclass(frozen=True)
class Files:
    """Where the generated files of one size live."""

    out: Path
    rows: int

    def path(self, stem: str, ext: str) -> Path:
        return self.out / f"{stem}_{self.rows}.{ext}"

    @property
    def tickets_jsonl(self) -> Path:
        return self.path("tickets", "jsonl")

    @property
    def tickets_csv(self) -> Path:
        return self.path("tickets", "csv")

    @property
    def changes_jsonl(self) -> Path:
        return self.path("changes", "jsonl")

    @property
    def changes_csv(self) -> Path:
        return self.path("changes", "csv")

    @property
    def manifest(self) -> Path:
        return self.path("manifest", "json")


VERSION = 1
"""Bump when the records change, so files made by an older generator are not reused."""
CHUNK = 50_000
"""Ids per chunk; part of the seed's meaning, so changing it changes the files."""


def _changed_ids(rows: int, seed: int) -> list[int]:
    """Exactly ``rows // 10`` ids, sorted, chosen by their own generator."""
    return sorted(
        random.Random(f"{seed}:changed").sample(range(1, rows + 1), rows // _CHANGE_SHARE)
    )


def _chunks(rows: int, seed: int, *, csv_too: bool, changes: bool) -> Iterator[_Chunk]:
    changed = _changed_ids(rows, seed) if changes else []
    at = 0
    for index, first in enumerate(range(1, rows + 1, CHUNK)):
        last = min(first + CHUNK - 1, rows)
        end = bisect.bisect_right(changed, last, lo=at)
        yield _Chunk(seed, index, first, last, tuple(changed[at:end]), rows + 1 + at, csv_too)
        at = end


def generate(
    files: Files, *, seed: int = 42, csv_too: bool = True, changes: bool = True
) -> dict[str, Any]:
    """Write the files (chunks made in parallel, written in order); return the manifest."""
    files.out.mkdir(parents=True, exist_ok=True)
    outputs = [files.tickets_jsonl, files.tickets_csv, files.changes_jsonl, files.changes_csv]
    wanted = [True, csv_too, changes, changes and csv_too]
    with contextlib.ExitStack() as stack:
        handles = [
            stack.enter_context(path.open("w", encoding="utf-8", newline="")) if keep else None
            for path, keep in zip(outputs, wanted, strict=True)
        ]
        for handle in handles[1::2]:
            if handle is not None:
                handle.write(",".join(FIELDS) + "\n")
        pool = stack.enter_context(multiprocessing.Pool(os.cpu_count() or 1))
        chunks = _chunks(files.rows, seed, csv_too=csv_too, changes=changes)
        for parts in pool.imap(_make_chunk, chunks):
            for handle, text in zip(handles, parts, strict=True):
                if handle is not None:
                    handle.write(text)
    changed = files.rows // _CHANGE_SHARE if changes else 0
    manifest = {
        "version": VERSION,
        "rows": files.rows,
        "seed": seed,
        "csv": csv_too,
        "changes": changes,
        "change_rows": 2 * changed,
        "expected_updated": changed,
        "expected_inserted": changed,
        "expected_unchanged_after_change": files.rows - changed,
    }
    files.manifest.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def is_current(files: Files, *, seed: int, csv_too: bool, changes: bool) -> bool:
    """Whether the files on disk were generated with these parameters (they are reproducible)."""
    try:
        manifest = json.loads(files.manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    wanted = {"version": VERSION, "rows": files.rows, "seed": seed}
    if any(manifest.get(k) != v for k, v in wanted.items()):
        return False
    return bool(manifest.get("csv") or not csv_too) and bool(manifest.get("changes") or not changes)


def main(argv: list[str] | None = None) -> None:
    """``python bench/generate_tickets.py --rows 1000000 --out bench/out``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    parser.add_argument("--no-csv", action="store_true", help="JSONL only")
    parser.add_argument("--no-changes", action="store_true", help="base file only")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    manifest = generate(
        Files(args.out, args.rows),
        seed=args.seed,
        csv_too=not args.no_csv,
        changes=not args.no_changes,
    )
    elapsed = time.perf_counter() - started
    print(json.dumps({**manifest, "seconds": round(elapsed, 1)}), file=sys.stdout)


if __name__ == "__main__":
    main()
