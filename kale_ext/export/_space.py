"""Parameter domains for the export targets, read from a search's stored definition.

The definition holds the space as ``Space.to_dict()`` wrote it (format 1: nodes of
``{"type": "dict", "items": ...}``, domains ``uniform``, ``loguniform``, ``int``,
``choice``, ``grid`` and ``const``). It is read here as plain JSON, so exporting needs
nothing of the search package. A parameter gets the domain the space gives it when every
trial agrees with it; constants, parameters a restart moved out of their domain, and
names whose branches of a conditional space disagree get one made from the values the
trials hold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kale_ext.export._data import TrialData, scalar


@dataclass(frozen=True)
class Domain:
    """The domain of one flat parameter.

    ``kind`` is ``"float"`` (``low``, ``high``, ``log``), ``"int"`` (``low``, ``high``,
    ``step``, ``log``) or ``"choice"`` (``options``: scalars; lists and dicts as JSON).
    """

    kind: str
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: int = 1
    options: tuple[Any, ...] = ()

    def contains(self, value: Any) -> bool:
        """Whether ``value`` (as :func:`scalar` makes it) lies in the domain."""
        if self.kind == "choice":
            return any(type(o) is type(value) and o == value for o in self.options)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.kind == "int":
            return isinstance(value, int) and self.low <= value <= self.high \
                and (value - int(self.low)) % self.step == 0
        return self.low <= value <= self.high


def _branch(options: Sequence[Any], value: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """Find the option node of a conditional choice that ``value`` (a dict) came from."""
    for option in options:
        if not isinstance(option, Mapping) or option.get("type") != "dict":
            continue
        items = option.get("items")
        if not isinstance(items, Mapping) or set(items) != set(value):
            continue
        constants = [(k, n.get("value")) for k, n in items.items()
                     if isinstance(n, Mapping) and n.get("type") == "const"]
        if all(value[k] == v for k, v in constants):
            return option
    return None


def _walk(node: Any, value: Any, prefix: str, out: dict[str, Domain]) -> None:
    if not isinstance(node, Mapping) or node.get("type") != "dict" \
            or not isinstance(value, Mapping) or not isinstance(node.get("items"), Mapping):
        return
    for key, spec in node["items"].items():
        if key not in value or not isinstance(spec, Mapping):
            continue
        name, item, kind = f"{prefix}{key}", value[key], spec.get("type")
        try:
            if kind in ("uniform", "loguniform"):
                out[name] = Domain("float", float(spec["low"]), float(spec["high"]),
                                   log=kind == "loguniform")
            elif kind == "int":
                out[name] = Domain("int", int(spec["low"]), int(spec["high"]),
                                   log=bool(spec.get("log", False)),
                                   step=int(spec.get("step", 1)))
            elif kind in ("choice", "grid"):
                options = list(spec["options"])
                if any(isinstance(o, Mapping) and o.get("type") == "dict" for o in options):
                    if isinstance(item, Mapping):  # a conditional choice: its branch's names
                        _walk(_branch(options, item), item, f"{name}.", out)
                else:
                    out[name] = Domain("choice", options=tuple(
                        scalar(o.get("value")) for o in options if isinstance(o, Mapping)))
            elif kind == "dict":
                _walk(spec, item, f"{name}.", out)
        except (KeyError, TypeError, ValueError):
            continue  # a definition this version cannot read: the values' domain serves


def _observed(values: Sequence[Any]) -> Domain:
    """Make a domain that holds ``values``: an int or float range, else their values."""
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return Domain("int", min(values), max(values))
    if values and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return Domain("float", float(min(values)), float(max(values)))
    options: list[Any] = []
    for v in values:
        if not any(type(o) is type(v) and o == v for o in options):
            options.append(v)
    return Domain("choice", options=tuple(options))


def domains(definition: Mapping[str, Any], trials: Sequence[TrialData]) -> dict[str, Domain]:
    """Give every flat parameter name of ``trials`` one domain, for all trials.

    Parameters
    ----------
    definition
        The search's stored definition (its ``space`` as ``Space.to_dict()`` wrote it).
    trials
        The trials whose parameters the domains must hold.
    """
    space = definition.get("space")
    node = space.get("space") if isinstance(space, Mapping) and space.get("format") == 1 \
        else None
    given: list[dict[str, Domain]] = []
    for t in trials:
        found: dict[str, Domain] = {}
        _walk(node, t.params, "", found)
        given.append(found)
    names: dict[str, None] = {}
    for t in trials:
        names.update(dict.fromkeys(t.flat))
    out: dict[str, Domain] = {}
    for name in names:
        held = [(scalar(t.flat[name]), g.get(name)) for t, g in zip(trials, given, strict=True)
                if name in t.flat]
        first = held[0][1]
        if first is not None and all(d == first and d.contains(v) for v, d in held):
            out[name] = first
        else:
            out[name] = _observed([v for v, _ in held])
    return out
