"""Generate the profile data of the profiles_documents example, reproducibly, into a database.

Eight tables: ``users`` (the entities) and seven kinds of data about them, from which the
pipeline builds seven doc types. Some users lack some kinds (no row in that table, or no
rows for the two ``many`` kinds); ``--empty TABLE`` empties one table entirely, so its doc
type is missing. ``manifest.json`` lists, per doc type, the rows, the documents a load
makes and exactly which users lack one: the coverage report must say the same.

The tables go to a SQLite file by default (no server needed) or to any SQLAlchemy URL
(``--url postgresql://...``); they are dropped and created again on every run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

Row = dict[str, Any]
HERE = Path(__file__).parent
DEFAULT_URL = "sqlite:///data/profiles.sqlite"
START = date(2021, 1, 4)
NAMES = ["Amara", "Bjorn", "Chen", "Dana", "Elif", "Femi", "Gita", "Hugo", "Ines", "Jonas",
         "Kiri", "Lena", "Mateo", "Nia", "Omar", "Priya", "Quinn", "Rosa", "Sami",
         "Tariq"]  # fmt: skip
SURNAMES = ["Okafor", "Larsen", "Wei", "Cohen", "Yilmaz", "Adeyemi", "Rao", "Moreau",
            "Silva", "Becker", "Tane", "Novak"]  # fmt: skip
CITIES = ["Nairobi", "Lisbon", "Osaka", "Toronto", "Berlin", "Lagos", "Pune", "Lyon"]
TYPE_CODES = ["INTJ", "ENFP", "ISTJ", "ESFJ", "INFP", "ENTP", "ISFP", "ESTJ"]
STYLES = ["visual", "auditory", "reading", "kinesthetic"]
CAREERS = ["Data analyst", "UX designer", "Nurse", "Teacher", "Software engineer",
           "Civil engineer", "Accountant", "Journalist", "Product manager",
           "Electrician"]  # fmt: skip
# Capitalized, and told apart before any space: every collation sorts them the same way.
SKILLS = ["Python", "SQL", "Public speaking", "Negotiation", "Statistics", "Writing",
          "Project planning", "Excel", "Design thinking", "Mentoring", "Data analysis"]  # fmt: skip
LEVELS = ["beginner", "intermediate", "advanced", "expert"]
WORK_MODES = ["remote", "hybrid", "on-site"]
SCHEDULES = ["early", "regular", "late"]
TEAM_SIZES = ["small", "medium", "large"]
TOPICS = ["data", "health", "education", "climate", "finance", "design", "robotics"]

DOC_TYPES = {  # doc type -> (table, share of users without one)
    "profile": ("profile", 0.05),
    "personality": ("personality", 0.15),
    "learning_style": ("learning_style", 0.2),
    "career_recommendations": ("career_recommendations", 0.15),
    "thinking_skills": ("thinking_skills", 0.25),
    "competencies": ("competencies", 0.1),
    "preferences": ("preferences", 0.3),
}


def _profile(rng: random.Random, user: int) -> list[Row]:
    return [
        {
            "user_id": user,
            "name": f"{rng.choice(NAMES)} {rng.choice(SURNAMES)}",
            "age": rng.randint(17, 64),
            "city": rng.choice(CITIES),
            "joined_on": START + timedelta(days=rng.randrange(1500)),
        }
    ]


def _personality(rng: random.Random, user: int) -> list[Row]:
    traits = ["openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism"]
    return [
        {"user_id": user, "type_code": rng.choice(TYPE_CODES)}
        | {trait: rng.randint(5, 95) / 100 for trait in traits}
    ]


def _learning_style(rng: random.Random, user: int) -> list[Row]:
    cuts = sorted(rng.sample(range(5, 96, 5), 3))
    shares = [b - a for a, b in zip([0, *cuts], [*cuts, 100], strict=True)]
    dominant = STYLES[max(range(4), key=lambda i: (shares[i], -i))]
    return [{"user_id": user, "dominant": dominant} | dict(zip(STYLES, shares, strict=True))]


def _career_recommendations(rng: random.Random, user: int) -> list[Row]:
    careers = rng.sample(CAREERS, rng.randint(1, 4))
    matches = sorted((rng.randint(55, 98) for _ in careers), reverse=True)
    return [
        {"user_id": user, "rank": rank, "career": career, "match": match}
        for rank, (career, match) in enumerate(zip(careers, matches, strict=True), start=1)
    ]


def _thinking_skills(rng: random.Random, user: int) -> list[Row]:
    skills = ["critical", "creative", "analytical", "practical"]
    return [{"user_id": user} | {skill: rng.randint(1, 10) for skill in skills}]


def _competencies(rng: random.Random, user: int) -> list[Row]:
    return [
        {"user_id": user, "skill": skill, "level": rng.choice(LEVELS)}
        for skill in rng.sample(SKILLS, rng.randint(1, 5))
    ]


def _preferences(rng: random.Random, user: int) -> list[Row]:
    return [
        {
            "user_id": user,
            "work_mode": rng.choice(WORK_MODES),
            "schedule": rng.choice(SCHEDULES),
            "team_size": rng.choice(TEAM_SIZES),
            "topics": ", ".join(sorted(rng.sample(TOPICS, rng.randint(1, 3)))),
        }
    ]


MAKERS = {
    "profile": _profile,
    "personality": _personality,
    "learning_style": _learning_style,
    "career_recommendations": _career_recommendations,
    "thinking_skills": _thinking_skills,
    "competencies": _competencies,
    "preferences": _preferences,
}


def generate(
    users: int, seed: int, empty: frozenset[str] = frozenset()
) -> tuple[dict[str, list[Row]], dict[str, Any]]:
    """The tables' rows and the manifest: what a documents load of them must report."""
    rng = random.Random(seed)
    tables: dict[str, list[Row]] = {"users": []}
    for user in range(1, users + 1):
        joined = datetime(2021, 1, 1) + timedelta(minutes=rng.randrange(2_000_000))
        tables["users"].append(
            {"user_id": user, "email": f"user{user}@example.org", "created_at": joined}
        )
    manifest: dict[str, Any] = {"seed": seed, "users": users, "empty": sorted(empty)}
    doc_types: dict[str, Any] = {}
    for doc_type, (table, absent) in DOC_TYPES.items():
        rows: list[Row] = []
        lacking: list[int] = []
        for user in range(1, users + 1):
            # Every user draws, whether or not the table is emptied: the other
            # tables stay the same with and without --empty.
            made = MAKERS[doc_type](rng, user)
            if rng.random() < absent or table in empty:
                lacking.append(user)
            else:
                rows += made
        tables[table] = rows
        doc_types[doc_type] = {
            "table": table,
            "rows": len(rows),
            "documents": users - len(lacking),
            "lacking": lacking,
            "missing": not rows,
        }
    manifest["doc_types"] = doc_types
    manifest["documents"] = sum(d["documents"] for d in doc_types.values())
    manifest["missing"] = [name for name, d in doc_types.items() if d["missing"]]
    return tables, manifest


def _table(metadata: sa.MetaData, name: str, rows: list[Row]) -> sa.Table:
    """The table's columns, typed from the generator's own values (a table may be empty)."""
    types = {int: sa.Integer, float: sa.Float, str: sa.Text, date: sa.Date, datetime: sa.DateTime}
    first = rows[0] if rows else MAKERS[name](random.Random(0), 1)[0]
    columns = [sa.Column(key, types[type(value)]) for key, value in first.items()]
    return sa.Table(name, metadata, *columns)


def write(url: str, tables: dict[str, list[Row]]) -> None:
    """Drop and create the tables at ``url``, then insert the rows, in one transaction."""
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    metadata = sa.MetaData()
    made = {name: _table(metadata, name, rows) for name, rows in tables.items()}
    try:
        with engine.begin() as conn:
            metadata.drop_all(conn)
            metadata.create_all(conn)
            for name, rows in tables.items():
                if rows:
                    conn.execute(made[name].insert(), rows)
    finally:
        engine.dispose()


def main() -> None:
    """Write the tables and ``manifest.json``, then print the manifest's coverage."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL, help=f"database (default {DEFAULT_URL})")
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--empty", action="append", default=[], choices=sorted(MAKERS))
    parser.add_argument("--manifest", type=Path, default=Path("data/manifest.json"))
    args = parser.parse_args()
    if args.url == DEFAULT_URL:
        Path("data").mkdir(exist_ok=True)
    tables, manifest = generate(args.users, args.seed, frozenset(args.empty))
    write(args.url, tables)
    args.manifest.parent.mkdir(parents=True, exist_ok=True)
    partial = args.manifest.with_suffix(".tmp")
    partial.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, args.manifest)
    print(f"{args.users} users; documents per type (users lacking one):")
    for name, item in manifest["doc_types"].items():
        lacking = "MISSING" if item["missing"] else ", ".join(map(str, item["lacking"]))
        print(f"  {name:<24}{item['documents']:>4}  ({lacking or 'none'})")


if __name__ == "__main__":
    main()
