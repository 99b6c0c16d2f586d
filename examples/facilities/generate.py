"""Generate a reproducible registry of health facilities, the way such registries arrive.

One JSON document holds the array under ``facilities``, with nested ``location`` and
``contacts``, the same field under different names in different records
(``name``/``facility_name``, ``code``/``facility_code``, ``type``/``facility_type``),
names with stray spaces, dates in two formats, a few invalid records (missing code,
bad coordinates, an unparseable date) and re-sent duplicates with a later
``updated_at``. Locations are county, sub-county and ward *names*, typed by hand
(``"  NAIROBI"``, ``"embakasi  east"``); ``wards.csv`` is the reference that gives
their ids, and a few records name a location it does not know (a misspelling, a ward
under the wrong sub-county, a ward missing from it). The manifest says exactly how
many of each, so tests can check the ledger against it.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# County -> sub-county -> wards; counties carry their national codes.
WARDS: dict[str, dict[str, list[str]]] = {
    "Mombasa": {
        "Mvita": ["Mji Wa Kale/Makadara", "Tudor", "Tononoka", "Shimanzi/Ganjoni", "Majengo"],
        "Nyali": ["Frere Town", "Ziwa La Ng'ombe", "Mkomani", "Kongowea", "Kadzandani"],
        "Likoni": ["Mtongwe", "Shika Adabu", "Bofu", "Likoni", "Timbwani"],
    },
    "Nakuru": {
        "Naivasha": ["Biashara", "Hells Gate", "Lake View", "Mai Mahiu", "Olkaria", "Viwandani"],
        "Gilgil": ["Gilgil", "Elementaita", "Mbaruk/Eburu", "Malewa West", "Murindati"],
        "Molo": ["Mariashoni", "Elburgon", "Turi", "Molo"],
    },
    "Kisumu": {
        "Kisumu Central": ["Railways", "Migosi", "Market Milimani", "Kondele", "Nyalenda B"],
        "Nyando": ["East Kano/Wawidhi", "Awasi/Onjiko", "Ahero", "Kabonyo/Kanyagwal", "Kobura"],
    },
    "Nairobi": {
        "Westlands": ["Kitisuru", "Parklands/Highridge", "Karura", "Kangemi", "Mountain View"],
        "Kibra": ["Laini Saba", "Lindi", "Makina", "Woodley/Kenyatta Golf Course"],
        "Embakasi East": ["Upper Savannah", "Lower Savannah", "Embakasi", "Utawala", "Mihango"],
    },
}
COUNTY_CODES = {"Mombasa": 1, "Nakuru": 32, "Kisumu": 42, "Nairobi": 47}
MISSING_WARDS = {"Nairobi": "Kilimani", "Mombasa": "Chaani", "Kisumu": "Kolwa East"}
"""Real wards that the reference leaves out: a record naming one matches nothing."""
TYPES = ["hospital", "health_centre", "dispensary", "clinic"]
MAX_LATITUDE = 90
SERVICES = ["maternity", "immunization", "hiv", "tb", "outpatient", "lab", "dental"]


def wards() -> list[dict[str, Any]]:
    """The reference: one row per ward, with the ids of its ward, sub-county and county."""
    rows = []
    sub_county_id = 0
    for county, sub_counties in WARDS.items():
        for sub_county, names in sub_counties.items():
            sub_county_id += 1
            for ward in names:
                rows.append(
                    {
                        "county": county,
                        "sub_county": sub_county,
                        "ward": ward,
                        "county_id": COUNTY_CODES[county],
                        "sub_county_id": sub_county_id,
                        "ward_id": len(rows) + 1,
                    }
                )
    return rows


def wards_csv() -> str:
    """The reference as the CSV file the pipeline reads (``data/wards.csv``)."""
    rows = wards()
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def location_key(location: dict[str, Any]) -> tuple[str, ...]:
    """How the lookup compares a location: trimmed, inner spaces collapsed, lowercased."""
    return tuple(
        " ".join(str(location[k]).split()).lower() for k in ("county", "sub_county", "ward")
    )


def _typed_by_hand(rng: random.Random, name: str) -> str:
    """A name as a person might type it: mostly right, sometimes in odd case or spacing."""
    how = rng.choice(["as is", "as is", "as is", "upper", "lower", "padded", "double space"])
    if how == "upper":
        return name.upper()
    if how == "lower":
        return name.lower()
    if how == "padded":
        return f"  {name} "
    if how == "double space":
        return name.replace(" ", "  ") if " " in name else f"{name}  "
    return name


def _facility(rng: random.Random, index: int) -> dict[str, Any]:
    county = rng.choice(sorted(WARDS))
    sub_county = rng.choice(sorted(WARDS[county]))
    ward = rng.choice(WARDS[county][sub_county])
    updated = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randrange(500_000))
    opened = datetime(1990, 1, 1) + timedelta(days=rng.randrange(12_000))
    record: dict[str, Any] = {
        "location": {
            "county": _typed_by_hand(rng, county),
            "sub_county": _typed_by_hand(rng, sub_county),
            "ward": _typed_by_hand(rng, ward),
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


def _unmatch(rng: random.Random, location: dict[str, Any]) -> None:
    """Make a location name a place the reference does not have."""
    county = " ".join(location["county"].split()).title()
    how = rng.choice(["misspelled", "wrong sub-county", "missing ward"])
    if how == "misspelled":
        location["county"] = county[:-1] + county[-2] + county[-1]  # Nairobi -> Nairobbi
    elif how == "wrong sub-county":
        current = " ".join(location["sub_county"].split()).lower()
        others = [s for s in sorted(WARDS[county]) if s.lower() != current]
        location["sub_county"] = rng.choice(others)
    else:
        location["ward"] = MISSING_WARDS.get(county, "Kiptangwanyi")


def generate(count: int = 500, seed: int = 7) -> tuple[dict[str, Any], dict[str, int]]:
    """The document and its manifest: how many records are valid, invalid, unmatched and
    duplicated, and how many facilities load."""
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
    unmatched = rng.sample(valid, count // 40)
    for record in unmatched:
        _unmatch(rng, record["location"])
    known = {location_key(w) for w in wards()}
    assert not any(location_key(r["location"]) in known for r in unmatched)  # noqa: S101
    matched = [r for r in valid if location_key(r["location"]) in known]
    duplicates: list[dict[str, Any]] = []
    for record in rng.sample(matched, max(2, count // 50)):
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
        "unmatched": len(unmatched),
        "matched": len(matched) + len(duplicates),
        "duplicates": len(duplicates),
        "facilities": len(matched),
        "quarantined": sum(broken.values()) + len(unmatched),
    }
    document = {
        "source": "national facility registry export",
        "generated": "2026-11-01",
        "facilities": everything,
    }
    return document, manifest


def main() -> None:
    """Write ``<out>/facilities.json`` and ``<out>/wards.csv``, and print the manifest."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data"))
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    document, manifest = generate(args.count, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "facilities.json").write_text(json.dumps(document, indent=1), encoding="utf-8")
    (args.out / "wards.csv").write_text(wards_csv(), encoding="utf-8")
    print(json.dumps(manifest))


if __name__ == "__main__":
    main()
