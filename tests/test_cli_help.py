"""Every subcommand documents itself: ``--help`` exits 0, has a description, and shows every
option's default and choices; ``partax regions`` is an ordinary subcommand."""

import argparse
import re
import subprocess
import sys

import pytest

from partax.cli import COMMANDS, build_parser, main

NAMES = ["demo", "partition", "info", "regions", "bounds", "count", "slice", "compress", "density", "bench"]
# options without a value by default: what their help says happens without them
UNSET = {
    ("partition", "--net"): "default: a random --widths net",
    ("partition", "--batch-size"): "default: the engine's choice",
    ("regions", "--layer"): "default: the last",
    ("regions", "--lo"): "default: no box",
    ("regions", "--partition"): "default: partition the inputs",
    ("compress", "--time-limit"): "default: none",
    ("slice", "--layer"): "default: the last",
    ("bench", "--only"): "default: all",
    ("bench", "--reps"): "default: 2 with --quick, else 3",
}


def _subparsers() -> dict:
    """name -> the subcommand's parser, built by each module's ``add_parser``."""
    sub = argparse.ArgumentParser().add_subparsers()
    return {command.__name__.rsplit(".", 1)[1]: command.add_parser(sub) for command in COMMANDS}


def _words(text: str) -> str:
    return " ".join(text.split())  # argparse wraps lines: compare words


def _option_blocks(help_text: str) -> dict:
    """``--option`` -> its entry in the help's option list (whitespace normalised)."""
    options = help_text[help_text.index("\noptions:"):]
    entries = re.split(r"\n(?=  -)", options)[1:]
    blocks = {re.match(r"\s*(?:-\w, )?(--[\w-]+)", e).group(1): _words(e) for e in entries}
    blocks.pop("--help")
    return blocks


def test_every_command_is_registered_in_order(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = re.findall(r"^    (\w+)", capsys.readouterr().out, re.M)
    assert listed == NAMES
    assert list(_subparsers()) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_help_exits_0_with_description_defaults_and_choices(name, capsys):
    with pytest.raises(SystemExit) as e:
        main([name, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    sub = _subparsers()[name]
    assert len(sub.description) > 60 and "".join(sub.description.split()) in "".join(out.split())
    blocks = _option_blocks(out)
    assert blocks, out
    for opt, block in blocks.items():
        default = sub.get_default(opt[2:].replace("-", "_"))
        if default not in (None, False):
            assert re.search(rf"\(default: {re.escape(str(default))}[) ]", block), \
                f"{name} {opt}: default {default!r} not shown in {block!r}"
    for (cmd, opt), says in UNSET.items():
        if cmd == name:
            assert sub.get_default(opt[2:].replace("-", "_")) is None
            assert says in blocks[opt], f"{name} {opt}"
    for choices in re.findall(r"\{([\w,]+)\}", out):  # argparse lists choices as {a,b,c}
        assert len(choices.split(",")) >= 2


def test_choices_are_listed():
    helps = {name: _words(p.format_help()) for name, p in _subparsers().items()}
    assert "{prefix,layer,suffix}" in helps["regions"] and "{auto,ipm,highs}" in helps["regions"]
    assert "{prefix,layer,suffix}" in helps["slice"]
    assert "{plugin,miller_madow}" in helps["info"] and "{uniform,gaussian}" in helps["partition"]
    assert "ib, mlp256, mlp1024, lp, slices, enumerate, sharded" in helps["bench"]


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_regions_is_an_ordinary_subcommand(capsys):
    """Its options are parsed by the partax parser (no forwarding of raw arguments)."""
    args = build_parser().parse_args(["regions", "--net", "n.npz", "--lo", "-1", "--hi", "1", "--out", "o",
                                      "--max-regions", "7", "--solver", "highs"])
    assert (args.net, args.lo, args.hi, args.max_regions, args.solver, args.samples, args.scope, args.layer) == \
        ("n.npz", -1.0, 1.0, 7, "highs", 100_000, "prefix", None)
    with pytest.raises(SystemExit) as e:  # an unknown option is argparse's error, exit 2
        main(["regions", "--net", "n.npz", "--out", "o", "--nope"])
    assert e.value.code == 2
    assert "unrecognized arguments: --nope" in capsys.readouterr().err


@pytest.mark.slow  # kept out of the default run (its ten minutes)
def test_python_m_partax_cli_shows_regions_help():
    """``partax regions --help`` in a fresh process (``python -m partax.cli`` = the console script)."""
    done = subprocess.run([sys.executable, "-m", "partax.cli", "regions", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--max-regions" in done.stdout and "default: 1000" in _words(done.stdout)
