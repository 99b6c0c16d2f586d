"""Generate a tutoring platform's records, as its apps would post them, with a manifest.

Four entities, one JSONL file each: tutors, students, the sessions between them and the
feedback students leave after a session. Times are ISO 8601 UTC with ``Z`` and spread
around a reference moment (``--now``, default the current minute), so derived fields
such as tenure and "active today" have something to say. Two kinds of bad records:

- **invalid** ones break a rule declared in ``pipeline.yaml`` (a rating of 7, a grade of
  0, a session that ends before it starts...). The ingest endpoint checks every record,
  so these are refused at the door (HTTP 400) and never reach the stream.
- **orphans**: sessions and feedback naming a tutor or student that does not exist.
  They are well-formed, so ingest accepts them; the worker's foreign-key check against
  the loaded tables quarantines them.

Each bad record breaks exactly one rule, so ``manifest.json`` can give exact counts per
entity and per reason, with the ids of every bad record.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

Record = dict[str, Any]
ENTITIES = ("tutors", "students", "sessions", "feedback")
KEYS = {
    "tutors": "tutor_id",
    "students": "student_id",
    "sessions": "session_id",
    "feedback": "feedback_id",
}
SUBJECTS = [
    "algebra",
    "geometry",
    "calculus",
    "physics",
    "chemistry",
    "biology",
    "english",
    "spanish",
    "history",
    "programming",
]
CATEGORIES = ("clarity", "patience", "knowledge", "engagement", "punctuality")
FIRST = ["Ada", "Bola", "Chen", "Dara", "Emil", "Fatou", "Goran", "Hana", "Ivo", "Jude", "Kemi"]
LAST = ["Okafor", "Lindqvist", "Moreau", "Nakamura", "Osei", "Petrov", "Quinn", "Rossi", "Silva"]
COMMENTS = [
    "Really clear explanations, thank you!",
    "We ran out of time for the last exercise.",
    "Great session, the examples helped a lot.",
    "Tutor joined late and the audio was bad.",
    "Patient with my questions.",
    "A bit fast for me.",
]
FEEDBACK_RATE = 0.7  # share of held sessions that students rate
SKIP_RATE = 0.08  # share of category ratings a student leaves out
MIN_PEOPLE = 3  # two tutors and two students are made invalid; one of each must remain
UNKNOWN_TUTOR = 9000  # ids of deleted tutor accounts start here
UNKNOWN_STUDENT = 90000  # and of deleted students here


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _moment(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


# ---------------------------------------------------------------- records


def _tutor(rng: random.Random, tutor_id: int, now: datetime) -> Record:
    # Tenure spread over every experience level: new (< 30 days), junior, mid, senior.
    low, high = rng.choice([(0, 29), (30, 89), (90, 364), (365, 1500)])
    hired = now.date() - timedelta(days=rng.randint(low, high))
    # A third were active in the last few hours (today, unless that crosses midnight).
    recent = rng.random() < 1 / 3
    idle = timedelta(minutes=rng.randint(1, 240) if recent else rng.randint(300, 60 * 24 * 45))
    return {
        "tutor_id": tutor_id,
        "name": _name(rng),
        "hired_at": hired.isoformat(),
        "subjects": sorted(rng.sample(SUBJECTS, rng.randint(1, 4))),
        "last_active_at": _stamp(max(now - idle, datetime.combine(hired, now.timetz()))),
    }


def _student(rng: random.Random, student_id: int, now: datetime) -> Record:
    enrolled = now - timedelta(days=rng.randint(1, 700), minutes=rng.randint(0, 1439))
    return {
        "student_id": student_id,
        "name": _name(rng),
        "grade": rng.randint(1, 13),
        "enrolled_at": _stamp(enrolled),
    }


def _session(
    rng: random.Random, tutor: Record, student: Record, now: datetime
) -> tuple[datetime, Record]:
    """A session in the last 120 days, on the half hour; the night ones are students abroad."""
    day = now.date() - timedelta(days=rng.randint(1, 120))
    hour = rng.choice([rng.randint(6, 21)] * 9 + [rng.choice([22, 23, 0, 1, 2, 3, 4])])
    start = datetime(day.year, day.month, day.day, hour, rng.choice([0, 30]), tzinfo=UTC)
    status = rng.choices(["completed", "no_show", "cancelled"], weights=[85, 8, 7])[0]
    record: Record = {
        "session_id": 0,
        "tutor_id": tutor["tutor_id"],
        "student_id": student["student_id"],
        "subject": rng.choice(tutor["subjects"]),
        "scheduled_start": _stamp(start),
        "actual_start": None,
        "actual_end": None,
        "status": status,
    }
    if status == "completed":
        # Most start within a few minutes; some are late, a few exactly 5 minutes (not late).
        delay = rng.choice([rng.randint(-120, 290)] * 8 + [300, rng.randint(301, 1500)])
        actual_start = start + timedelta(seconds=delay)
        duration = timedelta(minutes=rng.choice([30, 45, 60, 90]), seconds=rng.randint(-300, 400))
        record["actual_start"] = _stamp(actual_start)
        record["actual_end"] = _stamp(actual_start + duration)
    return start, record


def _feedback(rng: random.Random, session: Record) -> Record:
    end = _moment(session["actual_end"])
    rating = rng.choices([1, 2, 3, 4, 5], weights=[1, 2, 4, 8, 10])[0]
    categories: dict[str, int | None] = {
        # Category ratings follow the overall one; a student may skip some.
        name: None if rng.random() < SKIP_RATE else max(1, min(5, rating + rng.randint(-1, 1)))
        for name in CATEGORIES
    }
    comment = rng.choice([None, None, "", "   ", *COMMENTS, *COMMENTS])
    delay = rng.choice([rng.randint(60, 3600)] * 3 + [rng.randint(3600, 3 * 86400)])
    return {
        "feedback_id": 0,
        "session_id": session["session_id"],
        "tutor_id": session["tutor_id"],
        "student_id": session["student_id"],
        "rating": rating,
        **categories,
        "comment": comment,
        "submitted_at": _stamp(end + timedelta(seconds=delay)),
        "session_end": session["actual_end"],
    }


# ---------------------------------------------------------------- bad records

# How each entity's invalid records break a rule: (rule, field, how to break a record).
# Every one is refused by the ingest endpoint with exactly this rule and field.
BREAKS: dict[str, list[tuple[str, str, Any]]] = {
    "tutors": [
        ("required", "name", lambda r: r.update(name="  ")),
        ("type", "hired_at", lambda r: r.update(hired_at="last spring")),
    ],
    "students": [
        ("min", "grade", lambda r: r.update(grade=0)),
        ("max", "grade", lambda r: r.update(grade=14)),
    ],
    "sessions": [
        ("in", "subject", lambda r: r.update(subject="astrology")),
        ("ends_after_start", "actual_end", lambda r: r.update(actual_end=_before_start(r))),
    ],
    "feedback": [
        ("max", "rating", lambda r: r.update(rating=7)),
        ("min", "clarity", lambda r: r.update(clarity=0)),
        ("submitted_after_session", "submitted_at", lambda r: r.update(submitted_at=_earlier(r))),
    ],
}


def _before_start(record: Record) -> str:
    return _stamp(_moment(record["actual_start"]) - timedelta(minutes=10))


def _earlier(record: Record) -> str:
    return _stamp(_moment(record["session_end"]) - timedelta(hours=2))


def _break(rng: random.Random, records: list[Record], entity: str, count: int) -> Counter[str]:
    """Break ``count`` of ``records`` in place, each with one rule; the count per rule:field."""
    broken: Counter[str] = Counter()
    for index, record in enumerate(rng.sample(records, min(count, len(records)))):
        rule, field, how = BREAKS[entity][index % len(BREAKS[entity])]
        if entity == "sessions" and rule == "ends_after_start" and record["actual_end"] is None:
            rule, field, how = BREAKS[entity][0]  # only a held session has an end to break
        how(record)
        record["_broken"] = f"{rule}:{field}"
        broken[f"{rule}:{field}"] += 1
    return broken


def _orphan(rng: random.Random, records: list[Record], count: int) -> None:
    """Point ``count`` of ``records`` at a tutor or a student that does not exist (half each)."""
    for index, record in enumerate(rng.sample(records, min(count, len(records)))):
        field = "tutor_id" if index % 2 == 0 else "student_id"
        base = UNKNOWN_TUTOR if field == "tutor_id" else UNKNOWN_STUDENT
        record[field] = base + rng.randrange(1000)
        record["_orphan"] = field


# ---------------------------------------------------------------- the dataset


def generate(
    *, seed: int = 7, tutors: int = 50, students: int = 200, sessions: int = 2000, now: datetime
) -> tuple[dict[str, list[Record]], dict[str, Any]]:
    """Every entity's records (in posting order) and the manifest that counts them."""
    if min(tutors, students) < MIN_PEOPLE:
        raise ValueError(f"give at least {MIN_PEOPLE} tutors and {MIN_PEOPLE} students")
    rng = random.Random(seed)
    data: dict[str, list[Record]] = {
        "tutors": [_tutor(rng, i, now) for i in range(1, tutors + 1)],
        "students": [_student(rng, i, now) for i in range(1, students + 1)],
    }
    broken = {
        "tutors": _break(rng, data["tutors"], "tutors", max(2, tutors // 25)),
        "students": _break(rng, data["students"], "students", max(2, students // 50)),
    }
    good_tutors = [t for t in data["tutors"] if "_broken" not in t]
    good_students = [s for s in data["students"] if "_broken" not in s]
    planned = [
        _session(rng, rng.choice(good_tutors), rng.choice(good_students), now)
        for _ in range(sessions)
    ]
    planned.sort(key=lambda pair: (pair[0], pair[1]["tutor_id"], pair[1]["student_id"]))
    data["sessions"] = [record for _, record in planned]
    for number, record in enumerate(data["sessions"], start=1):
        record["session_id"] = number  # ids follow the schedule, as a booking system's do
    broken["sessions"] = _break(rng, data["sessions"], "sessions", max(2, sessions // 200))
    _orphan(rng, [s for s in data["sessions"] if "_broken" not in s], max(2, sessions // 80))
    held = [
        s
        for s in data["sessions"]
        if s["status"] == "completed" and not {"_broken", "_orphan"} & s.keys()
    ]
    feedback = [_feedback(rng, s) for s in held if rng.random() < FEEDBACK_RATE]
    feedback.sort(key=lambda r: (r["submitted_at"], r["session_id"]))
    for number, record in enumerate(feedback, start=1):
        record["feedback_id"] = number
    data["feedback"] = feedback
    broken["feedback"] = _break(rng, feedback, "feedback", max(3, len(feedback) // 200))
    _orphan(rng, [f for f in feedback if "_broken" not in f], max(2, len(feedback) // 80))
    manifest = {
        "seed": seed,
        "now": _stamp(now),
        "sizes": {"tutors": tutors, "students": students, "sessions": sessions},
        **{entity: _count(entity, data[entity], broken[entity]) for entity in ENTITIES},
    }
    for records in data.values():
        for record in records:
            record.pop("_broken", None)
            record.pop("_orphan", None)
    return data, manifest


def _count(entity: str, records: list[Record], broken: Counter[str]) -> dict[str, Any]:
    """Where each record of ``entity`` ends: refused at ingest, quarantined, or loaded."""
    key = KEYS[entity]
    rejected = [r[key] for r in records if "_broken" in r]
    orphans = {
        field: sorted(r[key] for r in records if r.get("_orphan") == field)
        for field in ("tutor_id", "student_id")
    }
    quarantined = {f"fk:{field}": len(ids) for field, ids in orphans.items() if ids}
    streamed = len(records) - len(rejected)
    return {
        "records": len(records),
        "rejected": len(rejected),
        "rejected_by_rule": dict(sorted(broken.items())),
        "streamed": streamed,
        "quarantined": sum(quarantined.values()),
        "quarantined_by_reason": quarantined,
        "loaded": streamed - sum(quarantined.values()),
        "ids": {
            "rejected": sorted(rejected),
            **{f"unknown_{f[:-3]}": ids for f, ids in orphans.items() if ids},
        },
    }


def write(out: Path, data: dict[str, list[Record]], manifest: dict[str, Any]) -> None:
    """``<entity>.jsonl`` per entity and ``manifest.json``, each replaced atomically."""
    out.mkdir(parents=True, exist_ok=True)
    files = {f"{entity}.jsonl": data[entity] for entity in ENTITIES}
    for name, records in files.items():
        text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        _replace(out / name, text)
    _replace(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")


def _replace(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def main() -> None:
    """Write the files and print the manifest's counts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data"))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--tutors", type=int, default=50)
    parser.add_argument("--students", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument(
        "--now",
        type=lambda s: datetime.fromisoformat(s).astimezone(UTC),
        default=datetime.now(UTC).replace(second=0, microsecond=0),
        help="reference moment, ISO 8601 (default: the current minute, UTC)",
    )
    args = parser.parse_args()
    try:
        data, manifest = generate(
            seed=args.seed,
            tutors=args.tutors,
            students=args.students,
            sessions=args.sessions,
            now=args.now,
        )
    except ValueError as exc:
        parser.error(str(exc))
    write(args.out, data, manifest)
    for entity in ENTITIES:
        counts = manifest[entity]
        print(
            f"{entity}: {counts['records']} records, {counts['rejected']} refused at ingest, "
            f"{counts['quarantined']} quarantined, {counts['loaded']} loaded"
        )


if __name__ == "__main__":
    main()
