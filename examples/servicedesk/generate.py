"""Generate a service desk's export, as its REST API serves it, in two reproducible rounds.

Round 1 is the desk's state on 1 March 2026: tickets, their comments and the agents'
timesheets. Round 2 is the same desk a week later: some tickets updated (status or
priority changed, ``updated_at`` moved on), new tickets, new comments on old and new
tickets, edited comments, new timesheet rows and corrections. Timesheets arrive as the
source system re-sends them: exact duplicate rows, and corrections that repeat a row's key
(user, date, time_from, ticket_id) with a later ``updated_at``. Many records share their
``updated_at`` second, the latest ones included. ``manifest.json`` says exactly how many of
each a full or an incremental fetch returns, so tests can check ladle's ledger against it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

Record = dict[str, Any]
Data = dict[str, list[Record]]

START = datetime(2026, 1, 5, tzinfo=UTC)  # round 1 covers START .. ROUND_1_END
ROUND_1_END = datetime(2026, 3, 1, tzinfo=UTC)
ROUND_2_START = ROUND_1_END + timedelta(hours=1)  # every round 2 change is later than round 1
ROUND_2_END = datetime(2026, 3, 9, tzinfo=UTC)
KEYS = {
    "tickets": ("ticket_id",),
    "comments": ("comment_id",),
    "timesheets": ("user", "date", "time_from", "ticket_id"),
}
LAST_ROUND = 2
MIN_SIZE = 20  # fewer tickets leave too few records to tie, duplicate and correct
TIE_SIZE = 3  # at most this many earlier records take a later one's updated_at
DUPLICATE_RATE = 0.03  # share of timesheet rows the source system sends twice
AGENTS = ["amara", "bjorn", "chen", "dana", "elif", "femi", "gita", "hugo"]
STATUSES = ["open", "pending", "resolved", "closed"]
PRIORITIES = ["low", "normal", "high", "urgent"]
DOMAINS = ["example.com", "example.org", "example.net"]
SUBJECTS = [
    "Cannot log in",
    "Invoice shows the wrong amount",
    "Printer on floor 3 offline",
    "VPN drops every hour",
    "Request for a new laptop",
    "Password reset link expired",
    "Export to CSV is empty",
    "Email attachments blocked",
]
BODIES = [
    "Thanks, that worked.",
    "Could you send a screenshot?",
    "Escalated to second line.",
    "Still happening this morning.",
    "Fixed by restarting the service.",
    "Waiting for the vendor.",
]
NOTES = ["investigation", "call with requester", "fix and test", "documentation", "follow-up"]


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _moment(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _between(rng: random.Random, low: datetime, high: datetime) -> datetime:
    """A whole second in [low, high]."""
    return low + timedelta(seconds=rng.randint(0, max(0, int((high - low).total_seconds()))))


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


# ---------------------------------------------------------------- records


def _ticket(rng: random.Random, ticket_id: int, low: datetime, high: datetime) -> Record:
    created = _between(rng, low, high - timedelta(hours=2))
    assignee = rng.choice([*AGENTS, None, None])
    return {
        "ticket_id": ticket_id,
        "subject": rng.choice(SUBJECTS),
        "status": "open" if assignee is None else rng.choice(STATUSES),
        "priority": rng.choices(PRIORITIES, weights=[3, 5, 2, 1])[0],
        "requester_email": f"user{rng.randrange(1, 400)}@{rng.choice(DOMAINS)}",
        "assignee": assignee,
        "created_at": _stamp(created),
        "updated_at": _stamp(_between(rng, created, high)),
    }


def _comment(rng: random.Random, ticket: Record, low: datetime, high: datetime) -> Record:
    """A comment without its id: ids are numbered in order of creation afterwards."""
    created = _stamp(_between(rng, low, high))
    agent = ticket["assignee"] or rng.choice(AGENTS)
    public = rng.randrange(5) != 0  # four in five comments are visible to the requester
    return {
        "comment_id": 0,
        "ticket_id": ticket["ticket_id"],
        "author": rng.choice([ticket["requester_email"], agent]) if public else agent,
        "body": rng.choice(BODIES),
        "public": public,
        "created_at": created,
        "updated_at": created,
    }


def _number(comments: list[Record], first_id: int) -> None:
    for offset, comment in enumerate(sorted(comments, key=lambda c: c["created_at"])):
        comment["comment_id"] = first_id + offset


def _timesheets(
    rng: random.Random,
    ticket: Record,
    window: tuple[datetime, datetime],
    taken: set[tuple[Any, ...]],
) -> list[Record]:
    """A few rows of work on the ticket, on days in the window and in the ticket's lifetime.

    A user submits a day's rows at once, in the evening, so their ``updated_at`` values tie.
    """
    first = max(window[0], _moment(ticket["created_at"])).date()
    last = min(window[1], _moment(ticket["updated_at"])).date()
    rows: list[Record] = []
    for _ in range(rng.choice([0, 1, 1, 2, 3]) if first <= last else 0):
        user = ticket["assignee"] or rng.choice(AGENTS)
        day = first + timedelta(days=rng.randint(0, (last - first).days))
        start, minutes = 8 * 60 + 15 * rng.randrange(36), 15 * rng.randint(1, 8)
        key = (user, day.isoformat(), _clock(start), ticket["ticket_id"])
        if key in taken:
            continue
        taken.add(key)
        submitted = datetime(day.year, day.month, day.day, 17, 30, tzinfo=UTC)
        submitted += timedelta(minutes=7 * AGENTS.index(user))
        rows.append(
            {
                "user": user,
                "date": day.isoformat(),
                "time_from": _clock(start),
                "time_to": _clock(start + minutes),
                "ticket_id": ticket["ticket_id"],
                "minutes": minutes,
                "note": rng.choice(NOTES),
                "updated_at": _stamp(submitted),
            }
        )
    return rows


def _correct(rng: random.Random, row: Record, high: datetime) -> Record:
    """The same key sent again later with different minutes: the later one is right."""
    low = max(_moment(row["updated_at"]) + timedelta(seconds=1), high - timedelta(days=3))
    minutes = row["minutes"] + 15
    start = int(row["time_from"][:2]) * 60 + int(row["time_from"][3:])
    return row | {
        "time_to": _clock(start + minutes),
        "minutes": minutes,
        "note": f"{row['note']} (corrected)",
        "updated_at": _stamp(_between(rng, low, high)),
    }


def _tie(rng: random.Random, records: list[Record], groups: int) -> None:
    """Give runs of records the same ``updated_at`` as the next one, the latest three included.

    Bulk updates do this, and a loader must neither skip nor repeat tied records. Only later
    values are copied onto earlier ones, so ``updated_at`` never falls before ``created_at``.
    """
    ordered = sorted(records, key=lambda r: r["updated_at"])
    if len(ordered) <= TIE_SIZE:
        return
    starts = range(TIE_SIZE, len(ordered) - 1)
    ends = [len(ordered) - 1, *rng.sample(starts, min(groups, len(starts)))]
    for index, end in enumerate(ends):
        size = TIE_SIZE - 1 if index == 0 else rng.randint(1, TIE_SIZE)
        for record in ordered[end - size : end]:
            record["updated_at"] = ordered[end]["updated_at"]


def _duplicate(rng: random.Random, rows: list[Record]) -> list[Record]:
    """Exact copies of ``DUPLICATE_RATE`` of the rows, re-sent by the source system."""
    return [dict(row) for row in rng.sample(rows, round(len(rows) * DUPLICATE_RATE))]


# ---------------------------------------------------------------- rounds


def _round_1(rng: random.Random, size: int) -> Data:
    tickets = [_ticket(rng, 1000 + i, START, ROUND_1_END) for i in range(1, size + 1)]
    _tie(rng, tickets, size // 20)
    comments: list[Record] = []
    rows: list[Record] = []
    taken: set[tuple[Any, ...]] = set()
    window = (START, ROUND_1_END - timedelta(days=1))
    for ticket in tickets:
        low, high = _moment(ticket["created_at"]), _moment(ticket["updated_at"])
        comments += [_comment(rng, ticket, low, high) for _ in range(rng.choice([0, 1, 2, 2, 4]))]
        rows += _timesheets(rng, ticket, window, taken)
    _number(comments, 1)
    _tie(rng, comments, len(comments) // 20)
    corrections = [_correct(rng, row, ROUND_1_END) for row in rng.sample(rows, max(2, size // 100))]
    return {
        "tickets": tickets,
        "comments": comments,
        "timesheets": [*rows, *_duplicate(rng, rows), *corrections],
    }


def _round_2(rng: random.Random, data: Data) -> Data:
    """Round 1 as it changes in the following week; every change is later than round 1."""
    tickets, comments, rows = data["tickets"], data["comments"], data["timesheets"]
    size = len(tickets)
    changed = rng.sample(tickets, max(4, size // 10))
    for ticket in changed:
        ticket["status"] = rng.choice([s for s in STATUSES if s != ticket["status"]])
        ticket["assignee"] = ticket["assignee"] or rng.choice(AGENTS)
        if rng.choice([True, False, False]):  # a third of the updates also re-prioritize
            ticket["priority"] = rng.choice(PRIORITIES)
        ticket["updated_at"] = _stamp(_between(rng, ROUND_2_START, ROUND_2_END))
    first_id = max(t["ticket_id"] for t in tickets) + 1
    new = [
        _ticket(rng, first_id + i, ROUND_2_START, ROUND_2_END) for i in range(max(4, size // 20))
    ]
    _tie(rng, changed + new, size // 40)
    added = [_comment(rng, t, ROUND_2_START, ROUND_2_END) for t in rng.sample(tickets, size // 15)]
    for ticket in new:
        low = _moment(ticket["created_at"])
        added += [_comment(rng, ticket, low, ROUND_2_END) for _ in range(rng.randint(1, 2))]
    _number(added, max(c["comment_id"] for c in comments) + 1)
    edited = rng.sample(comments, max(4, len(comments) // 25))
    for comment in edited:
        comment["body"] += " [edited]"
        comment["updated_at"] = _stamp(_between(rng, ROUND_2_START, ROUND_2_END))
    _tie(rng, added + edited, len(added) // 10)
    return {
        "tickets": tickets + new,
        "comments": comments + added,
        "timesheets": rows + _round_2_timesheets(rng, rows, changed + new),
    }


def _round_2_timesheets(
    rng: random.Random, rows: list[Record], worked: list[Record]
) -> list[Record]:
    latest = {tuple(r[k] for k in KEYS["timesheets"]): r for r in sorted(rows, key=_chronological)}
    taken = set(latest)
    window = (ROUND_2_START, ROUND_2_END - timedelta(days=1))
    added = [row for ticket in worked for row in _timesheets(rng, ticket, window, taken)]
    old = rng.sample(sorted(latest.values(), key=_chronological), max(2, len(latest) // 100))
    corrections = [_correct(rng, row, ROUND_2_END) for row in old]
    return [*added, *_duplicate(rng, added), *corrections]


# ---------------------------------------------------------------- manifest


def _key(endpoint: str, record: Record) -> tuple[Any, ...]:
    return tuple(record[k] for k in KEYS[endpoint])


def _served_order(endpoint: str) -> Callable[[Record], tuple[Any, ...]]:
    """The API's order: by ``updated_at``, then key, so pages are stable."""
    return lambda record: (record["updated_at"], *_key(endpoint, record))


def _chronological(record: Record) -> tuple[Any, ...]:
    """By ``updated_at``, then content, so that equal times still sort the same every run."""
    return (record["updated_at"], json.dumps(record, sort_keys=True))


def _summary(endpoint: str, records: list[Record]) -> dict[str, Any]:
    """Counts of a set of records: served, distinct keys, exact copies and extra versions."""
    keys = {_key(endpoint, r) for r in records}
    distinct = {json.dumps(r, sort_keys=True) for r in records}
    stamps = Counter(r["updated_at"] for r in records)
    return {
        "records": len(records),
        "keys": len(keys),
        "duplicates": len(records) - len(distinct),
        "corrections": len(distinct) - len(keys),
        "tied": sum(n for n in stamps.values() if n > 1),
        "max_updated_at": max(stamps, default=None),
    }


def _incremental(endpoint: str, before: list[Record], after: list[Record]) -> dict[str, Any]:
    """What a fetch with ``updated_since`` = round 1's latest ``updated_at`` returns in round 2."""
    since = max(r["updated_at"] for r in before)
    window = [r for r in after if _moment(r["updated_at"]) > _moment(since)]
    old = {_key(endpoint, r) for r in before}
    keys = {_key(endpoint, r) for r in window}
    summary = _summary(endpoint, window)
    return {
        "since": since,
        **{k: summary[k] for k in ("records", "keys", "duplicates", "corrections")},
        "new": len(keys - old),
        "changed": len(keys & old),
    }


def generate(size: int = 1500, seed: int = 7, round_number: int = 1) -> tuple[Data, dict[str, Any]]:
    """The records of each endpoint, sorted as the API serves them, and their manifest."""
    if size < MIN_SIZE:
        raise ValueError(f"size must be at least {MIN_SIZE} tickets, not {size}")
    rng = random.Random(seed)
    data = _round_1(rng, size)
    incremental: dict[str, Any] = {}
    if round_number == LAST_ROUND:
        before = json.loads(json.dumps(data))
        data = _round_2(rng, data)
        incremental = {e: _incremental(e, before[e], data[e]) for e in KEYS}
    data = {e: sorted(records, key=_served_order(e)) for e, records in data.items()}
    manifest: dict[str, Any] = {"round": round_number, "seed": seed, "size": size}
    manifest["full"] = {e: _summary(e, data[e]) for e in KEYS}
    if incremental:
        manifest["incremental"] = incremental
    return data, manifest


def write(out: Path, data: Data, manifest: dict[str, Any]) -> None:
    """One JSON array per endpoint and ``manifest.json``, each replaced atomically."""
    out.mkdir(parents=True, exist_ok=True)
    files = {f"{endpoint}.json": records for endpoint, records in data.items()}
    for name, content in [*files.items(), ("manifest.json", manifest)]:
        temporary = out / f".{name}.tmp"
        temporary.write_text(json.dumps(content, indent=1) + "\n", encoding="utf-8")
        os.replace(temporary, out / name)  # the server never reads a half-written file


def main() -> None:
    """Write ``<out>/{tickets,comments,timesheets,manifest}.json`` and print the manifest."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data"))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--tickets", type=int, default=1500)
    parser.add_argument("--round", type=int, choices=[1, 2], default=1)
    args = parser.parse_args()
    if args.tickets < MIN_SIZE:
        parser.error(f"--tickets must be at least {MIN_SIZE}")
    previous = args.out / "manifest.json"
    if args.round == LAST_ROUND and previous.exists():
        first = json.loads(previous.read_text(encoding="utf-8"))
        if (first["seed"], first["size"]) != (args.seed, args.tickets):
            parser.error(
                f"{previous} was written with --seed {first['seed']} --tickets {first['size']}; "
                "run round 2 with the same options"
            )
    data, manifest = generate(args.tickets, args.seed, args.round)
    write(args.out, data, manifest)
    print(json.dumps(manifest))


if __name__ == "__main__":
    main()
