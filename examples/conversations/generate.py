"""Generate a reproducible chat export, the way Teams and Skype exports arrive.

One JSON document holds the array under ``conversations``. Each conversation has an
``id``, a ``topic`` (null for one-to-one chats), a ``threadType``, its ``participants``
(``id``, ``displayName``) and its ``messages`` (``id``, ``originalarrivaltime``, ``from``,
``content``, ``messagetype``), written newest first with some neighbours swapped: never
in arrival order. Arrival times are ISO 8601 in UTC (``Z``) or, for some senders, with
their own offset (``+03:00``); a few messages share their arrival time to the
millisecond. Content is HTML-ish (``<p>``, ``<at>`` mentions, call and member events).

Some messages come from people who are no longer among the conversation's participants
(their sender name stays unknown), and the export is not clean: messages that are not
objects, arrival times that are not times, conversations that are not objects, one
without an id, and conversations whose ``messages`` is not a list. The manifest says
exactly how many of each, so tests can check the ledger against it.
"""

from __future__ import annotations

import argparse
import json
import random
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

FIRST_NAMES = [
    "Amina", "Brian", "Chen", "Dalia", "Emeka", "Fatuma", "Grace", "Hiro", "Ines", "Jomo",
    "Kamau", "Lena", "Mwangi", "Nadia", "Otieno", "Priya", "Quentin", "Rehema", "Sami", "Tariq",
]  # fmt: skip
LAST_NAMES = ["Achieng", "Baraka", "Costa", "Diallo", "Eze", "Fischer", "Gupta", "Haddad"]
TOPICS = [
    "Quarterly planning", "Release 4.2", "Nairobi office move", "On-call rota",
    "Budget review", "Customer escalations", "Design crit", "Hiring: data engineer",
]  # fmt: skip
PHRASES = [
    "Sounds good, see you at 3", "Can you share the deck?", "I'll take a look after lunch",
    "The build is green again", "Who owns the migration?", "Pushed a fix, please review",
    "Running 5 min late", "Thanks & see you tomorrow", "Let's move this to Thursday",
    "Numbers for May are in the sheet", "Ping me when you're free", "Done ✅",
]  # fmt: skip
TYPES = ["Text", "RichText/Html", "RichText/Html", "RichText/Html", "Event/Call",
         "ThreadActivity/AddMember", "RichText/Media_Card"]  # fmt: skip
"""Message types, weighted as a real export has them: most messages are HTML."""
MESSAGE_TYPES = sorted(set(TYPES))
NOT_OBJECTS: list[Any] = [None, "<deleted>", 42, ["a message", "in a list"]]
BAD_TIMES = ["yesterday", "31/02/2025 25:61", "2025-13-40T99:00:00Z"]
EAST_AFRICA = timezone(timedelta(hours=3))


def _person(rng: random.Random) -> dict[str, str]:
    person_id = f"8:orgid:{uuid.UUID(int=rng.getrandbits(128), version=4)}"
    name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
    return {"id": person_id, "displayName": name}


def _spelled(moment: datetime, rng: random.Random) -> str:
    """An arrival time as exports write it: UTC with ``Z``, sometimes the sender's offset."""
    if rng.random() < 0.15:  # noqa: PLR2004 - a share of senders
        return moment.astimezone(EAST_AFRICA).isoformat(timespec="milliseconds")
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _content(rng: random.Random, kind: str, sender: dict[str, str], people: list[Any]) -> str:
    phrase = rng.choice(PHRASES)
    if kind == "Text":
        return phrase
    text = phrase.replace("&", "&amp;")
    if kind == "Event/Call":
        return (
            f'<partlist type="started" alt=""><part identity="{sender["id"]}">'
            f"<name>{sender['displayName']}</name></part></partlist>"
        )
    if kind == "ThreadActivity/AddMember":
        target = rng.choice(people)["id"]
        return (
            f"<addmember><initiator>{sender['id']}</initiator><target>{target}</target></addmember>"
        )
    if kind == "RichText/Media_Card":
        return '<URIObject type="SWIFT.1" uri="https://example.org/card"><Title>Card</Title>'
    if rng.random() < 0.3:  # noqa: PLR2004 - a share of messages mention someone
        return f'<p><at id="0">{rng.choice(people)["displayName"]}</at> {text}</p>'
    return f"<div><p>{text}</p></div>"


def _messages(
    rng: random.Random, participants: list[dict[str, str]], strangers: list[dict[str, str]]
) -> list[dict[str, Any]]:
    """A conversation's messages, newest first with some neighbours swapped."""
    moment = datetime(2025, 1, 6, 8, tzinfo=UTC) + timedelta(minutes=rng.randrange(200_000))
    messages = []
    for _ in range(rng.randrange(0, 40)):
        if not messages or rng.random() > 0.05:  # noqa: PLR2004 - some share a millisecond
            moment += timedelta(seconds=rng.randrange(1, 7200), milliseconds=rng.randrange(1000))
        # Someone who has left the conversation is no longer among its participants.
        left = rng.random() < 0.06  # noqa: PLR2004
        sender = rng.choice(strangers if left else participants)
        kind = rng.choice(TYPES)
        messages.append(
            {
                "id": str(int(moment.timestamp() * 1000)),
                "originalarrivaltime": _spelled(moment, rng),
                "from": sender["id"],
                "content": _content(rng, kind, sender, participants),
                "messagetype": kind,
            }
        )
    messages.reverse()
    for i in range(len(messages) - 1):
        if rng.random() < 0.2:  # noqa: PLR2004 - the export's order is not to be trusted
            messages[i], messages[i + 1] = messages[i + 1], messages[i]
    return messages


def _conversation(rng: random.Random, people: list[dict[str, str]]) -> dict[str, Any]:
    group = rng.random() < 0.6  # noqa: PLR2004 - most chats are groups
    participants = rng.sample(people, rng.randrange(3, 9) if group else 2)
    strangers = [p for p in people if p not in participants]
    suffix = uuid.UUID(int=rng.getrandbits(128)).hex
    one_to_one = f"19:{suffix[:16]}_{suffix[16:]}@unq.gbl.spaces"
    return {
        "id": f"19:{suffix}@thread.v2" if group else one_to_one,
        "topic": rng.choice(TOPICS) if group else None,
        "threadType": "chat",
        "version": rng.randrange(10**12, 10**13),
        "participants": participants,
        "messages": _messages(rng, participants, strangers),
    }


def generate(count: int = 120, seed: int = 7) -> tuple[dict[str, Any], dict[str, int]]:
    """The export and its manifest: how many conversations and messages load, how many are
    quarantined and why, and how many messages have no sender name."""
    rng = random.Random(seed)
    people = [_person(rng) for _ in range(40)]
    conversations = [_conversation(rng, people) for _ in range(count)]
    with_messages = [c for c in conversations if len(c["messages"]) >= 3]  # noqa: PLR2004
    with_messages = rng.sample(with_messages, len(with_messages))
    no_id, not_list, spoiled = with_messages[0], with_messages[1:3], with_messages[3:]
    del no_id["id"]
    not_list[0]["messages"] = "messages are not available for this conversation"
    not_list[1]["messages"] = {"error": "thread archived"}
    slots = [(c, i) for c in spoiled for i in range(len(c["messages"]))]
    chosen = rng.sample(slots, len(NOT_OBJECTS) + len(BAD_TIMES))
    for (conversation, i), value in zip(chosen[: len(NOT_OBJECTS)], NOT_OBJECTS, strict=True):
        conversation["messages"][i] = value
    for (conversation, i), value in zip(chosen[len(NOT_OBJECTS) :], BAD_TIMES, strict=True):
        conversation["messages"][i]["originalarrivaltime"] = value
    elements = sum(len(c["messages"]) for c in conversations if isinstance(c["messages"], list))
    quarantined = {
        "not_objects": len(NOT_OBJECTS),
        "bad_times": len(BAD_TIMES),
        "not_lists": len(not_list),
        "without_conversation": len(no_id["messages"]),
    }
    loaded = [
        (c, m)
        for c in conversations
        if "id" in c and isinstance(c["messages"], list)
        for m in c["messages"]
        if isinstance(m, dict) and m["originalarrivaltime"] not in BAD_TIMES
    ]
    everything: list[Any] = [*conversations]
    everything.insert(count // 3, "conversation unavailable")
    everything.insert(2 * count // 3, None)
    manifest = {
        "conversations": len(everything),
        "conversations_loaded": count - 1,
        "conversations_not_objects": 2,
        "conversations_without_id": 1,
        "conversations_quarantined": 3,
        "messages": elements + len(not_list),
        "messages_loaded": len(loaded),
        **{f"messages_{why}": n for why, n in quarantined.items()},
        "messages_quarantined": sum(quarantined.values()),
        "unknown_senders": sum(
            1 for c, m in loaded if m["from"] not in {p["id"] for p in c["participants"]}
        ),
    }
    assert manifest["messages"] == manifest["messages_loaded"] + manifest["messages_quarantined"]  # noqa: S101
    document = {"exportedAt": "2025-06-30T12:00:00Z", "conversations": everything}
    return document, manifest


def main() -> None:
    """Write ``<out>/export.json`` and print the manifest."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data"))
    parser.add_argument("--count", type=int, default=120)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    document, manifest = generate(args.count, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "export.json").write_text(
        json.dumps(document, indent=1, ensure_ascii=False), encoding="utf-8"
    )
    print(json.dumps(manifest))


if __name__ == "__main__":
    main()
