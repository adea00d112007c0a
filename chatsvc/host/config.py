# -*- test-case-name: tests.test_config -*-
"""
Options from a TOML file (C{--config FILE}), overridden by the command line.

Every key of the file is a long option name (C{max-connections = 5000}); the
values are checked against the options' own types and ranges, and any error
names the file and the key.
"""

from __future__ import annotations

import difflib
import sys
import tomllib
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from twisted.python import reflect, usage

_NOT_IN_FILE = frozenset({"config", "help", "version"})


def _find_config(args: Sequence[str]) -> str | None:
    """
    Return the value of C{--config} (or C{-c}) among C{args}, if any.
    """
    path = None
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg in ("--config", "-c") and i + 1 < len(args):
            path = args[i + 1]
        elif arg.startswith("--config="):
            path = arg.partition("=")[2]
        elif arg.startswith("-c") and not arg.startswith("--") and len(arg) > 2:
            path = arg[2:]
    return path


class ConfigFileOptions(usage.Options):
    """
    Options that can also be given in a TOML file with C{--config}.

    @ivar config_values: what the file set, by option name.
    """

    optParameters: ClassVar[list[Any]] = [
        [
            "config",
            "c",
            None,
            "Read options from this TOML file (keys are the long option names);"
            " the command line overrides it.",
        ],
    ]

    config_values: dict[str, Any]

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        args = list(sys.argv[1:] if options is None else options)
        self.config_values = {}
        path = _find_config(args)
        if path is not None:
            self.config_values = self._load(path)
            self.opts.update(self.config_values)
        super().parseOptions(args)

    def _load(self, path: str) -> dict[str, Any]:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except OSError as e:
            raise usage.UsageError(f"{path}: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise usage.UsageError(f"{path}: not valid TOML: {e}") from None
        parameters: list[list[Any]] = []
        flags: list[list[Any]] = []
        reflect.accumulateClassList(type(self), "optParameters", parameters)
        reflect.accumulateClassList(type(self), "optFlags", flags)
        known = {p[0]: p for p in parameters} | {f[0]: None for f in flags}
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key in _NOT_IN_FILE or key not in known:
                close = difflib.get_close_matches(key, known, 1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise usage.UsageError(f"{path}: unknown key {key!r}{hint}")
            parameter = known[key]
            try:
                values[key] = (
                    _flag(value) if parameter is None else _parameter(parameter, value)
                )
            except (TypeError, ValueError) as e:
                raise usage.UsageError(f"{path}: {key}: {e}") from None
        return values

    def command_line(self, exclude: Iterable[str] = ()) -> list[str]:
        """
        Arguments that give another process these options: C{--config} if a
        file was read, and every option the command line set, except
        C{exclude} (secrets in the file stay out of the process list).
        """
        skip = set(exclude) | _NOT_IN_FILE
        args = [f"--config={self['config']}"] if self["config"] else []
        for name, default, flag in self._known():
            value = self.opts.get(name)
            if name in skip or value is None or value == default:
                continue
            if name in self.config_values and value == self.config_values[name]:
                continue
            args.append(f"--{name}" if flag else f"--{name}={value}")
        return args

    def _known(self) -> list[tuple[str, Any, bool]]:
        parameters: list[list[Any]] = []
        flags: list[list[Any]] = []
        reflect.accumulateClassList(type(self), "optParameters", parameters)
        reflect.accumulateClassList(type(self), "optFlags", flags)
        return [(p[0], p[2], False) for p in parameters] + [
            (f[0], 0, True) for f in flags
        ]

    def config_error(self, error: ValueError) -> usage.UsageError:
        """
        Turn a settings error (its message starts with the setting's name)
        into a usage error that names the file when the value came from it.
        """
        message = str(error)
        key = message.split(" ", 1)[0].replace("_", "-")
        path = self["config"]
        if key in self.config_values and self.opts.get(key) == self.config_values[key]:
            return usage.UsageError(
                f"{path}: {message.replace(key.replace('-', '_'), key, 1)}"
            )
        return usage.UsageError(message.replace(key.replace("-", "_"), f"--{key}", 1))


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"must be true or false, not {value!r}")
    return value


def _parameter(parameter: list[Any], value: object) -> Any:
    default = parameter[2]
    coerce = parameter[4] if len(parameter) > 4 else None
    expected: tuple[type, ...]
    if isinstance(default, int):
        expected, kind = (int,), "a whole number"
    elif isinstance(default, float):
        expected, kind = (int, float), "a number"
    elif default is None and coerce is not None:
        expected, kind = (int, str), "a whole number or a string"
    else:
        expected, kind = (str,), "a string"
    if isinstance(value, bool) or not isinstance(value, expected):
        raise TypeError(f"must be {kind}, not {value!r}")
    return coerce(str(value)) if coerce is not None else value
