"""Fetch the public conformance suites with npm, check their integrity, and unpack them.

Run by ``make conformance`` (a prerequisite of ``make test``). The suites are not
copied into this repository: each is packed by ``npm pack`` at a pinned version, its
tarball's SHA-512 is compared with the pin below, and it is unpacked into
``tests/.conformance/NAME-VERSION/`` (gitignored). A suite already there is left alone.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / ".conformance"
"""Where the unpacked suites live: tests/.conformance/."""

NPM_HINT = (
    "fetching the conformance suites needs npm: install Node.js and npm "
    "(Debian/Ubuntu: apt-get install npm; macOS: brew install node), then run `make conformance`"
)


@dataclass(frozen=True)
class Suite:
    """One npm package, pinned by version and by the SHA-512 of its tarball."""

    name: str
    version: str
    integrity: str

    @property
    def spec(self) -> str:
        """What npm is asked for: ``name@version``."""
        return f"{self.name}@{self.version}"

    @property
    def directory(self) -> Path:
        """Where the package's files are unpacked."""
        return ROOT / f"{self.name}-{self.version}"


JSON_TEST_SUITE = Suite(
    "json-test-suite",
    "1.0.0",
    "sha512-NNGEsqtbHqQcocE+kIb2NzmqU3BWN3bpI39DBME0GrjIRPxme/LCSH+7fIHDhJGDIArStvS5cEp3AJVUbU8iZQ==",
)
"""nst/JSONTestSuite's test_parsing/ as data/parsing.js (MIT)."""

CSV_SPECTRUM = Suite(
    "csv-spectrum",
    "2.0.0",
    "sha512-gjW9YEAkcrJo4AEdrV9+4lkUXlOyYyC+1Ap3efzMiUUs1OTdZ29VraBZNBBKZK7iiUkbMNkUmfKp/jnayzHxAA==",
)
"""csvs/*.csv with their expected json/*.json (BSD-2-Clause)."""

SUITES = (JSON_TEST_SUITE, CSV_SPECTRUM)
READY = ".verified"
"""Written into a suite's directory once its tarball matched its pin and was unpacked."""


def is_ready(suite: Suite) -> bool:
    """Whether the suite is unpacked and was verified."""
    return (suite.directory / READY).is_file()


def sha512_integrity(path: Path) -> str:
    """The tarball's Subresource Integrity string, computed here (not taken from npm)."""
    digest = hashlib.sha512(path.read_bytes()).digest()
    return "sha512-" + base64.b64encode(digest).decode("ascii")


def fetch(suite: Suite, npm: str) -> None:
    """Pack the suite with npm, check the tarball against its pin, unpack it."""
    with tempfile.TemporaryDirectory(prefix="ladle-conformance-") as scratch:
        packed = subprocess.run(
            [npm, "pack", "--json", "--pack-destination", scratch, suite.spec],
            capture_output=True,
            text=True,
            check=False,
        )
        if packed.returncode != 0:
            sys.exit(f"npm pack {suite.spec} failed: {packed.stderr.strip()}")
        reported = json.loads(packed.stdout)[0]
        tarball = Path(scratch) / reported["filename"]
        for what, found in (("npm", reported["integrity"]), ("tarball", sha512_integrity(tarball))):
            if found != suite.integrity:
                sys.exit(
                    f"{suite.spec}: the {what} integrity is {found}, but "
                    f"tests/conformance/fetch_suites.py pins {suite.integrity}; refusing it"
                )
        staging = Path(scratch) / "unpacked"
        with tarfile.open(tarball) as archive:
            archive.extractall(staging, filter="data")
        shutil.rmtree(suite.directory, ignore_errors=True)
        suite.directory.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(staging / "package", suite.directory)
        (suite.directory / READY).write_text(suite.integrity + "\n")


def main() -> None:
    """Fetch every suite that is missing; say what to install when npm is not there."""
    missing = [suite for suite in SUITES if not is_ready(suite)]
    if not missing:
        return
    npm = shutil.which("npm")
    if npm is None:
        sys.exit(NPM_HINT)
    for suite in missing:
        print(f"fetching {suite.spec} into {suite.directory}")
        fetch(suite, npm)


if __name__ == "__main__":
    main()
