"""Post the generated records to ``ladle serve``'s ingest endpoint, as the platform's apps would.

Each entity's JSONL file goes to ``POST /ingest/{entity}`` as NDJSON, ``--batch`` records
per request: tutors and students first, then sessions, then feedback. The endpoint takes
a request whole or not at all: when it answers 400, the records it names are reported
as rejected (with the file's line and the rule they break) and the rest of the request
is sent again. Any other failure (no server, a wrong token, Redis down) stops the script
with exit code 1; what was accepted before it stays in the stream.

Only the standard library is used.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENTITIES = ("tutors", "students", "sessions", "feedback")


class TransportError(Exception):
    """The endpoint could not be reached or answered something other than 202 or 400."""


@dataclass
class Tally:
    """What happened to one entity's records."""

    sent: int = 0
    accepted: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    """One entry per refused record: its line in the file and the errors the endpoint gave."""


@dataclass(frozen=True)
class Endpoint:
    """Where and how to post."""

    url: str
    token: str
    timeout: float = 30.0

    def post(self, resource: str, lines: list[bytes]) -> tuple[int, dict[str, Any]]:
        """POST the lines as NDJSON; the status (202 or 400) and the JSON answer."""
        request = urllib.request.Request(  # noqa: S310 - the URL is the user's own endpoint
            f"{self.url.rstrip('/')}/ingest/{resource}",
            data=b"".join(line.rstrip(b"\n") + b"\n" for line in lines),
            method="POST",
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/x-ndjson",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            body = exc.read()
            if exc.code == 400:  # noqa: PLR2004 - the endpoint's "records refused"
                return exc.code, json.loads(body)
            detail = body.decode("utf-8", "replace")[:300]
            raise TransportError(f"POST /ingest/{resource}: HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TransportError(
                f"POST /ingest/{resource}: cannot reach {self.url}: {reason}"
            ) from None


def post_batch(
    endpoint: Endpoint, resource: str, batch: list[tuple[int, bytes]], tally: Tally
) -> None:
    """Post ``(line number, line)`` pairs until every one is accepted or named as rejected."""
    pending = batch
    while pending:
        status, answer = endpoint.post(resource, [line for _, line in pending])
        if status != 400:  # noqa: PLR2004 - 202: all were appended
            tally.accepted += len(answer["ids"])
            return
        errors: dict[int, list[dict[str, Any]]] = {}
        for error in answer["errors"]:
            if error.get("record") is None:
                raise TransportError(f"POST /ingest/{resource}: refused: {error['message']}")
            errors.setdefault(error["record"], []).append(error)
        for index, found in sorted(errors.items()):
            tally.rejected.append({"line": pending[index][0], "errors": found})
        pending = [pair for index, pair in enumerate(pending) if index not in errors]


def post_file(
    endpoint: Endpoint, resource: str, path: Path, *, batch: int, rate: float | None
) -> Tally:
    """Post one entity's file, ``batch`` records per request, at most ``rate`` records a second."""
    tally = Tally()
    started = time.monotonic()
    with path.open("rb") as lines:
        numbered = [(n, line) for n, line in enumerate(lines, start=1) if line.strip()]
    for start in range(0, len(numbered), batch):
        chunk = numbered[start : start + batch]
        post_batch(endpoint, resource, chunk, tally)
        tally.sent += len(chunk)
        if rate:
            ahead = tally.sent / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    return tally


def _describe(error: dict[str, Any]) -> str:
    where = f"{error['field']}: " if error.get("field") else ""
    return f"{where}{error['message']} ({error['rule']})"


def main() -> int:
    """Post every entity in order; print what was accepted and rejected."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument(
        "--token-env", default="LADLE_INGEST_TOKEN", help="variable holding the token"
    )
    parser.add_argument("--batch", type=int, default=500, help="records per request")
    parser.add_argument("--rate", type=float, help="at most this many records per second")
    parser.add_argument("--json", action="store_true", help="print the counts as one JSON object")
    args = parser.parse_args()
    token = os.environ.get(args.token_env, "")
    if not token:
        print(
            f"post.py: set {args.token_env} to the token `ladle serve` was started with",
            file=sys.stderr,
        )
        return 1
    endpoint = Endpoint(args.url, token)
    summary: dict[str, dict[str, Any]] = {}
    for entity in ENTITIES:
        path = args.data / f"{entity}.jsonl"
        try:
            tally = post_file(endpoint, entity, path, batch=args.batch, rate=args.rate)
        except (TransportError, OSError) as exc:
            print(f"post.py: {entity}: {exc}", file=sys.stderr)
            return 1
        summary[entity] = {
            "sent": tally.sent,
            "accepted": tally.accepted,
            "rejected": len(tally.rejected),
            "rejected_lines": [r["line"] for r in tally.rejected],
        }
        if not args.json:
            counts = f"{tally.sent} sent, {tally.accepted} accepted, {len(tally.rejected)} rejected"
            print(f"{entity}: {counts}")
            for rejected in tally.rejected:
                reasons = "; ".join(_describe(e) for e in rejected["errors"])
                print(f"  {path.name}:{rejected['line']}: {reasons}")
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
