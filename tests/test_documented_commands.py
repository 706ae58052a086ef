"""Every `poisonlab` command line in the README and docs names a subcommand that exists and only
flags it accepts, so a documented command cannot drift from the CLI; and `--help` works on every
subcommand."""

import argparse
import re
import shlex
from pathlib import Path

import pytest

from poisonlab.cli import build_parser

ROOT = Path(__file__).parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# `poisonlab ...`, `python -m poisonlab.cli ...`, `accelerate launch ... -m poisonlab.cli ...`
INVOCATION = re.compile(r"(?:^|\s|`)(?:poisonlab|-m poisonlab\.cli)\s+(?=[a-z-])")


def _code_lines(text: str) -> list[str]:
    """Lines of fenced code blocks, with backslash continuations joined."""
    lines, inside, pending = [], False, ""
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            inside, pending = not inside, ""
            continue
        if not inside:
            continue
        line = pending + line.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        lines.append(line)
    return lines


def documented_commands() -> list[tuple[str, list[str]]]:
    found = []
    for doc in DOCS:
        for line in _code_lines(doc.read_text(encoding="utf-8")):
            line = re.split(r"\s#", line)[0]  # a shell comment may quote another command
            match = INVOCATION.search(line)
            if match is None or line.lstrip().startswith(("|", "$ pip", "pip ")):
                continue
            rest = line[match.end():]
            try:
                tokens = shlex.split(rest)
            except ValueError:
                continue
            found.append((f"{doc.relative_to(ROOT)}: {line}", tokens))
    return found


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


COMMANDS = documented_commands()


def test_the_docs_document_commands():
    assert len(COMMANDS) > 30


@pytest.mark.parametrize("where, tokens", COMMANDS, ids=[w[:90] for w, _ in COMMANDS])
def test_a_documented_command_exists_with_its_flags(where, tokens):
    parser = build_parser()
    path = []
    while tokens and (choices := _subparsers(parser)):
        name = tokens[0]
        assert name in choices, f"{where}: '{' '.join(path + [name])}' is not a subcommand"
        parser, path, tokens = choices[name], path + [name], tokens[1:]
    accepted = set(parser._option_string_actions)
    unknown = [t.split("=")[0] for t in tokens
               if t.startswith("--") and t.split("=")[0] not in accepted]
    assert not unknown, f"{where}: 'poisonlab {' '.join(path)}' has no flag {', '.join(unknown)}"


def _all_subcommands(parser, path=()):
    for name, sub in _subparsers(parser).items():
        yield path + (name,)
        yield from _all_subcommands(sub, path + (name,))


@pytest.mark.parametrize("path", list(_all_subcommands(build_parser())), ids=" ".join)
def test_help_works_on_every_subcommand(path, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*path, "--help"])
    assert exit_.value.code == 0 and "usage:" in capsys.readouterr().out
