"""An editor for a trial's hyperparameters, built from the search space."""

from __future__ import annotations

import json
from typing import Any

from kale_ext.search import Choice, Integer, Space, Uniform
from kale_ext.widgets._bokeh import require


def _field(name: str, spec: Any) -> Any:
    widgets = require("ipywidgets")
    style = {"description_width": "initial"}
    layout = widgets.Layout(width="260px")
    if isinstance(spec, Integer):
        return widgets.IntText(description=f"{name} [{spec.low}..{spec.high}]", style=style,
                               layout=layout)
    if isinstance(spec, Uniform):
        return widgets.FloatText(description=f"{name} [{spec.low:g}..{spec.high:g}]",
                                 style=style, layout=layout)
    if isinstance(spec, Choice) and not any(isinstance(o, dict) for o in spec.options):
        return widgets.Dropdown(description=name, style=style, layout=layout,
                                options=[(json.dumps(o), o) for o in spec.options])
    # Constants and conditional choices: any JSON value.
    return widgets.Text(description=f"{name} (JSON)", style=style, layout=layout)


class ParamEditor:
    """One field per parameter of ``space``: numbers, ints, choices, JSON for the rest.

    ``load(config)`` fills it from a trial's config; ``changes(config)`` returns the
    values that differ, as flat names; validation is the space's own (``Space.apply``).
    """

    def __init__(self, space: Space) -> None:
        widgets = require("ipywidgets")
        self.space = space
        flat = Space.flatten(space.spec)
        self.fields: dict[str, Any] = {name: _field(name, spec) for name, spec in flat.items()}
        self.widget = widgets.Box(list(self.fields.values()),
                                  layout=widgets.Layout(flex_flow="row wrap"))

    def load(self, config: dict[str, Any]) -> None:
        """Show the values of ``config`` (a trial's nested config)."""
        for name, field in self.fields.items():
            found, value = _get(config, name)
            if not found:
                continue
            if field.__class__.__name__ == "Text":
                field.value = json.dumps(value)
            elif field.__class__.__name__ == "Dropdown":
                if value in [v for _, v in field.options]:
                    field.value = value
            else:
                field.value = value

    def values(self) -> dict[str, Any]:
        """Return the fields' values by flat name; raise ValueError for text not JSON."""
        out = {}
        for name, field in self.fields.items():
            if field.__class__.__name__ == "Text":
                try:
                    out[name] = json.loads(field.value)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{name}: {field.value!r} is not JSON ({e.msg}); write "
                                     "numbers as 1.5, strings as \"text\", lists as [1, 2].") \
                        from e
            else:
                out[name] = field.value
        return out

    def changes(self, config: dict[str, Any]) -> dict[str, Any]:
        """Flat names whose field differs from ``config``; checked with ``Space.apply``."""
        changed = {n: v for n, v in self.values().items() if _get(config, n) != (True, v)}
        self.space.apply(config, changed)  # raises SpaceError naming value and rule
        return changed


def _get(config: dict[str, Any], name: str) -> tuple[bool, Any]:
    """Return ``(True, value)`` at the flat ``name`` ("a.b") in a nested config.

    Return ``(False, None)`` when the config has no such value.
    """
    node: Any = config
    for part in name.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node
