"""Docs that cannot rot: the README's benchmark block is its committed run's numbers, and the
README's Python examples run in the default test run (a fast variant with smaller sizes; the
verbatim run is `tests/test_readme.py`, marked slow). Docstring examples run through
``--doctest-modules`` (pyproject's pytest options)."""

import json
import pathlib
import re
import warnings

from partax.bench import readme_section

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()

# The fast variant: the same code with smaller sizes (each replacement must match: if an
# example changes, this table must follow, so the fast run never silently drifts from it).
FAST = [
    ("2**24", "2**16"),
    ("100_000", "20_000"),
    ("max_regions=100", "max_regions=8"),
    ("epochs=30, batch_size=64", "epochs=6, batch_size=64"),
    ("xd[1400:]", "xd[1400:1500]"),
    ("yd[1400:]", "yd[1400:1500]"),
    ("xg[:10_000], xg[10_000:]", "xg[:2_000], xg[2_000:4_000]"),
]


def test_readme_bench_block_is_the_committed_run():
    m = re.search(r"<!-- bench:begin (\S+) -->\n(.*?)\n<!-- bench:end -->", README, re.S)
    assert m, "README.md: the benchmark block's markers are missing"
    path, block = m.group(1), m.group(2)
    result = json.loads((ROOT / path / "bench.json").read_text())
    assert block == readme_section(result, path + "/"), "regenerate it: python scripts/readme_bench.py " + path
    assert (ROOT / path / "bench.md").exists()


def test_readme_numbers_outside_the_block_are_not_benchmarks():
    """Throughputs and speed-ups appear only inside the generated block."""
    outside = re.sub(r"<!-- bench:begin .*?<!-- bench:end -->", "", README, flags=re.S)
    assert not re.findall(r"\d[\d.,]*\s*(?:[kMG] )?(?:in/s|inputs/s|regions/s|GFLOP/s)", outside)
    assert not re.findall(r"\d+(?:\.\d+)?× (?:faster|slower)", outside)


def test_readme_python_examples_run_fast_variant():
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert len(blocks) >= 4
    code = "\n".join(blocks)
    for old, new in FAST:
        assert old in code, f"README examples no longer contain {old!r}: update FAST"
        code = code.replace(old, new)
    code = code.replace("progress=True", "progress=False")
    namespace = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the tiny sample's Monte Carlo volume flags
        exec(compile(code, str(ROOT / "README.md"), "exec"), namespace)
    assert namespace["e"].complete
    assert namespace["p"].total == 20_000
