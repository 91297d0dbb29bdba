"""Writes the README's benchmark table from a committed bench run.

    python scripts/readme_bench.py benchmarks/2026-12-01-cpu

replaces the text between ``<!-- bench:begin DIR -->`` and ``<!-- bench:end -->`` in README.md
with :func:`partax.bench.readme_section` of ``DIR/bench.json`` (and names DIR in the marker).
``tests/test_docs.py`` regenerates the block from the file the marker names and compares.
"""

import json
import pathlib
import re
import sys

from partax.bench import readme_section
from partax.files import atomic_write_text

ROOT = pathlib.Path(__file__).resolve().parents[1]
MARKERS = re.compile(r"<!-- bench:begin (\S+) -->\n.*?<!-- bench:end -->", re.S)


def main(path: str) -> None:
    rel = pathlib.Path(path).resolve().relative_to(ROOT).as_posix()
    result = json.loads((ROOT / rel / "bench.json").read_text())
    readme = (ROOT / "README.md").read_text()
    if not MARKERS.search(readme):
        raise SystemExit("README.md: no <!-- bench:begin DIR --> ... <!-- bench:end --> block")
    block = f"<!-- bench:begin {rel} -->\n{readme_section(result, rel + '/')}\n<!-- bench:end -->"
    atomic_write_text(ROOT / "README.md", MARKERS.sub(lambda m: block, readme, count=1))
    print(f"README.md: benchmark block from {rel}/bench.json")


if __name__ == "__main__":
    main(sys.argv[1])
