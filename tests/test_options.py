"""Every option of every command, swept with values outside its domain (negative, zero, NaN,
infinite, out of range, far beyond 64 bits, malformed lists and sizes, unknown devices):
each ends with exit status 2 and one line naming the option, before anything is written.

The sweep is derived from the parsers: an option added to any command is swept at once,
and one declared without a domain (an ``OptionType`` or ``choices``) fails here.
"""

from __future__ import annotations

import argparse
import os

import pytest

from fastpgan.cli import dataset, main, train
from fastpgan.cli.options import OptionType

COMMANDS = {"fastpgan": main.main, "fastpgan-train": train.main,
            "fastpgan-dataset": dataset.main}
REQUIRED = {  # what a command needs besides the option swept: paths that need not exist
    "fastpgan-train": [],
    "fastpgan-dataset": ["src", "out", "--resolution", "8"],
    "fastpgan generate": ["ckpt"], "fastpgan interpolate": ["ckpt"],
    "fastpgan style-mix": ["ckpt"], "fastpgan metrics": ["ckpt"],
    "fastpgan project": ["ckpt", "--target", "t.png"], "fastpgan convert": ["pkl", "out"],
    "fastpgan explore": ["ckpt"],
    "fastpgan doctor": [],
}


def _commands() -> dict[str, argparse.ArgumentParser]:
    parsers = {"fastpgan-train": train.build_parser(),
               "fastpgan-dataset": dataset.build_parser()}
    for action in main.build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            parsers.update({f"fastpgan {name}": sub for name, sub in action.choices.items()})
    return parsers


def _options() -> list[tuple[str, argparse.Action]]:
    return [(command, action) for command, parser in _commands().items()
            for action in parser._actions
            if action.nargs != 0 and not isinstance(action, argparse._HelpAction)]


def _cases() -> list[tuple[str, str, str]]:
    cases = []
    for command, action in _options():
        if isinstance(action.type, OptionType):
            invalid = action.type.invalid
        elif action.choices is not None:
            invalid = ("nonsense", "")
        else:
            continue  # test_every_option_has_a_domain names it
        name = action.option_strings[0] if action.option_strings else action.dest
        cases += [(command, name, value) for value in invalid]
    return cases


def test_every_option_has_a_domain():
    undeclared = [f"{command} {action.option_strings or action.dest}"
                  for command, action in _options()
                  if not isinstance(action.type, OptionType) and action.choices is None]
    assert not undeclared, f"declare a domain (fastpgan.cli.options) for {undeclared}"


def test_the_sweep_covers_every_command():
    assert {command for command, _, _ in _cases()} == set(REQUIRED) - {"fastpgan doctor"}


@pytest.mark.parametrize("command,option,value", _cases(),
                         ids=[f"{c}|{o}|{v}" for c, o, v in _cases()])
def test_a_value_outside_an_options_domain_is_refused_in_one_line(tmp_path, monkeypatch,
                                                                   capsys, command, option,
                                                                   value):
    monkeypatch.chdir(tmp_path)
    program, _, sub = command.partition(" ")
    run = COMMANDS[program]
    required = REQUIRED[command]
    if option.startswith("-"):
        argv = [*([sub] if sub else []), *required, option, value]
    else:  # a positional: the value in its place
        argv = [*([sub] if sub else []),
                *[value if arg == option else arg for arg in required]]
    assert run(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"argument {option}" in err, err
    assert not os.listdir(tmp_path), "nothing written"
