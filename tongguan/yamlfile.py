"""Reading the product's YAML files (rules, policy, anomaly settings, alerting, the ingest
catalogue, the views' indicators and interface strings): one loader, so a broken file gives the
same kind of error everywhere — one line naming the file, the line and column, and the problem,
in the error type of the package that owns the file — and a key written twice in a mapping is
an error instead of the silent "last one wins" of ``yaml.safe_load``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice."""

    def construct_mapping(self, node, deep=False):
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{key!r} is given twice in one mapping", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _one_line(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        what = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        return f"line {mark.line + 1}, column {mark.column + 1}: {what}"
    return " ".join(str(exc).split())


def parse_yaml(text: str, source: str, what: str, error: Callable[[str], Exception] = ValueError) -> Any:
    """The YAML document in ``text``; ``error("cannot read <what> <source>: <why>")`` when it
    does not parse.

    >>> parse_yaml("a: 1\\nb: [x, y]", "t.yaml", "test file")
    {'a': 1, 'b': ['x', 'y']}
    >>> parse_yaml("a: 1\\na: 2", "t.yaml", "test file")
    Traceback (most recent call last):
    ...
    ValueError: cannot read test file t.yaml: line 2, column 1: 'a' is given twice in one mapping
    """
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise error(f"cannot read {what} {source}: {_one_line(exc)}") from None


def read_yaml(path, what: str, error: Callable[[str], Exception] = ValueError) -> Any:
    """The YAML document in the file ``path`` (a path or an ``importlib.resources`` file), with
    :func:`parse_yaml`'s errors; a file that cannot be read is the same kind of one-line error."""
    try:
        text = Path(path).read_text(encoding="utf-8") if isinstance(path, str | Path) else path.read_text(
            encoding="utf-8")
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    return parse_yaml(text, str(path), what, error)
