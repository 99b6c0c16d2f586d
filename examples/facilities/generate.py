"""Generate a reproducible registry of health facilities, the way such registries arrive.

One JSON document holds the array under ``facilities``, with nested ``location`` and
``contacts``, the same field under different names in different records
(``name``/``facility_name``, ``code``/``facility_code``, ``type``/``facility_type``),
names with stray spaces, dates in two formats, a few invalid records (missing code,
bad coordinates, an unparseable date) and re-sent duplicates with a later
``updated_at``. The manifest says exactly how many of each, so tests can check the
ledger against it.
"""

from __future__ import annotations

import argparse
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

COUNTIES = {
    "Nairobi": ["Westlands", "Kibra", "Embakasi East"],
    "Mombasa": ["Mvita", "Nyali", "Likoni"],
    "Kisumu": ["Kisumu Central", "Nyando"],
    "Nakuru": ["Naivasha", "Gilgil", "Molo"],
}
TYPES = ["hospital", "health_centre", "dispensary", "clinic"]
MAX_LATITUDE = 90
MAX_LATITUDE = 90
SERVICES = ["maternity", "immunization", "hiv", "tb", "outpatient", "lab", "dental"]


def _facility(rng: random.Random, index: int) -> dict[str, Any]:
    county = rng.choice(sorted(COUNTIES))
    updated = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randrange(500_000))
    opened = datetime(1990, 1, 1) + timedelta(days=rng.randrange(12_000))
    record: dict[str, Any] = {
        "location": {
            "county": county,
            "sub_county": rng.choice(COUNTIES[county]),
            "latitude": round(rng.uniform(-4.5, 4.5), 6),
            "longitude": round(rng.uniform(34.0, 41.5), 6),
        },
        "contacts": {
            "phone": f"+2547{rng.randrange(10**8):08d}",
            "email": f"info{index}@example.org",
        },
        "beds": rng.choice([rng.randrange(0, 400), str(rng.randrange(0, 50))]),
        "opened_on": rng.choice([opened.strftime("%Y-%m-%d"), opened.strftime("%d/%m/%Y")]),
        "services": rng.sample(SERVICES, rng.randrange(1, 4)),
        "updated_at": updated.isoformat(),
    }
    kind = rng.choice(["Central", "Community", "St. Mary", "Mission"])
    name = f"  {county} {kind}  Facility {index} "  # stray spaces, as typed by hand
    # The same field under different names, as registries merged from several sources do.
    record["code" if index % 3 == 0 else "facility_code"] = f"KE-{index:05d}"
    record["name" if index % 2 == 0 else "facility_name"] = name
    record["type" if index % 4 == 0 else "facility_type"] = rng.choice(TYPES)
    return record


def _break(record: dict[str, Any], how: str) -> None:
    if how == "missing_code":
        record.pop("code", None)
        record.pop("facility_code", None)
    elif how == "bad_coordinates":
        record["location"]["latitude"] = 123.4
    elif how == "bad_date":
        record["opened_on"] = "sometime in 1998"


def generate(count: int = 500, seed: int = 7) -> tuple[dict[str, Any], dict[str, int]]:
    """The document and its manifest: how many records are valid, invalid and duplicated."""
    rng = random.Random(seed)
    records = [_facility(rng, i) for i in range(1, count + 1)]
    broken = {"missing_code": 0, "bad_coordinates": 0, "bad_date": 0}
    for record in rng.sample(records, max(3, count // 25)):
        how = rng.choice(sorted(broken))
        _break(record, how)
        broken[how] += 1
    valid = [r for r in records if "code" in r or "facility_code" in r]
    valid = [r for r in valid if r["location"]["latitude"] < MAX_LATITUDE]
    valid = [r for r in valid if "sometime" not in r["opened_on"]]
    duplicates: list[dict[str, Any]] = []
    for record in rng.sample(valid, max(2, count // 50)):
        again = json.loads(json.dumps(record))
        again["updated_at"] = (
            datetime.fromisoformat(record["updated_at"]) + timedelta(days=3)
        ).isoformat()
        again["beds"] = 1000 + len(duplicates)
        duplicates.append(again)
    everything = records + duplicates
    rng.shuffle(everything)
    manifest = {
        "records": len(everything),
        "invalid": sum(broken.values()),
        **broken,
        "duplicates": len(duplicates),
        "facilities": len(valid),
    }
    document = {
        "source": "national facility registry export",
        "generated": "2026-11-01",
        "facilities": everything,
    }
    return document, manifest


def main() -> None:
    """Write ``<out>/facilities.json`` and print the manifest."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data"))
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    document, manifest = generate(args.count, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "facilities.json").write_text(json.dumps(document, indent=1), encoding="utf-8")
    print(json.dumps(manifest))


if __name__ == "__main__":
    main()
