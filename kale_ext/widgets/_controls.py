"""The control bar: stop, pause, resume or restart selected trials, or the whole search.

Every action calls the search's public API and shows what it did, or its error.
"""

from __future__ import annotations

import contextlib
import html
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kale_ext._errors import KaleError
from kale_ext.search import Space
from kale_ext.widgets._bokeh import require
from kale_ext.widgets._editor import ParamEditor

if TYPE_CHECKING:
    from kale_ext.search import Search
    from kale_ext.widgets._table import TrialTable

READ_ONLY = ("Read-only view of a stored search: to control it, continue it with "
             "kale.Search.resume(store_path, cluster=...) and open its panel().")


class Controls:
    """Buttons and a parameter editor acting on ``table``'s selected trials.

    Parameters
    ----------
    search
        The live search; None for a read-only view (buttons disabled, reason shown).
    table
        The trial table whose selected rows the trial buttons act on.
    space
        The search space, for the editor.
    config_of
        Returns a trial's current config (to fill the editor and compute edits).
    after
        Called after every action (the panel refreshes at once).
    """

    def __init__(self, search: Search | None, table: TrialTable, space: Space | None,
                 config_of: Callable[[int], dict[str, Any]],
                 after: Callable[[], None] = lambda: None) -> None:
        widgets = require("ipywidgets")
        self.search, self.table, self.config_of, self.after = search, table, config_of, after
        self.editor = ParamEditor(space) if space is not None else None
        self.message = widgets.HTML(READ_ONLY if search is None else "")
        # A fixed width: the buttons beside it must not move when the selection changes.
        self.selection = widgets.HTML("no trial selected",
                                      layout=widgets.Layout(width="200px"))
        def b(**kwargs: Any) -> Any:  # sized to its label: "Restart with edits" is not cut
            return widgets.Button(layout=widgets.Layout(width="auto"), **kwargs)

        self.live = search is not None
        self.buttons: dict[str, Any] = {
            "stop": b(description="Stop", icon="stop", button_style="danger",
                      tooltip="Stop the selected trials"),
            "pause": b(description="Pause", icon="pause", tooltip="Pause the selected trials"),
            "resume": b(description="Resume", icon="play", tooltip="Resume the selected trials"),
            "restart": b(description="Restart with edits", icon="refresh", button_style="warning",
                         tooltip="Run the selected trials again with the edited parameters"),
            "pause_search": b(description="Pause search", icon="pause"),
            "resume_search": b(description="Resume search", icon="play"),
            "stop_search": b(description="Stop search", icon="stop", button_style="danger"),
        }
        actions: dict[str, Callable[[], None]] = {
            "stop": lambda: self._per_trial("stop", lambda s, t: s.stop(t)),
            "pause": lambda: self._per_trial("pause", lambda s, t: s.pause(t)),
            "resume": lambda: self._per_trial("resume", lambda s, t: s.resume(t)),
            "restart": self._restart,
            "pause_search": lambda: self._whole("pause", lambda s: s.pause()),
            "resume_search": lambda: self._whole("resume", lambda s: s.resume()),
            "stop_search": lambda: self._whole("stop", lambda s: s.stop()),
        }
        for name, button in self.buttons.items():
            button.on_click(lambda _b, act=actions[name]: act())
        self._enable()
        table.on_select(self._on_select)
        trial_row = widgets.HBox([self.selection, *(self.buttons[n] for n in
                                  ("stop", "pause", "resume", "restart"))])
        search_row = widgets.HBox([self.buttons[n] for n in
                                   ("pause_search", "resume_search", "stop_search")])
        parts = [trial_row]
        if self.editor is not None:
            parts.append(widgets.Accordion([self.editor.widget], titles=("Edit parameters",)))
        self.widget = widgets.VBox([*parts, search_row, self.message])

    # -- actions ---------------------------------------------------------------------

    def _per_trial(self, verb: str, act: Callable[[Search, int], None]) -> None:
        trials = list(self.table.selected)
        if self.search is None:
            self._show(READ_ONLY, ok=False)
            return
        if not trials:
            self._show(f"Select one or more trials in the table to {verb} them.", ok=False)
            return
        done, errors = [], []
        for t in trials:
            try:
                act(self.search, t)
                done.append(t)
            except KaleError as e:
                errors.append(f"trial {t}: {e}")
        lines = [f"{verb}: asked trial(s) {', '.join(map(str, done))}"] if done else []
        self._show("<br>".join(html.escape(x) for x in lines + errors), ok=not errors,
                   escaped=True)
        self.after()

    def _restart(self) -> None:
        if self.editor is None or not self.table.selected:
            self._per_trial("restart", lambda s, t: None)
            return
        try:
            changes = self.editor.changes(self.config_of(self.table.selected[0]))
        except (KaleError, ValueError) as e:
            self._show(f"restart: not restarted, the edited parameters are invalid: {e}",
                       ok=False)
            return
        nested = Space.unflatten(changes)
        what = ", ".join(f"{k}={v!r}" for k, v in changes.items()) or "unchanged parameters"
        self._per_trial(f"restart with {what}", lambda s, t: s.restart(t, **nested))

    def _whole(self, verb: str, act: Callable[[Search], None]) -> None:
        if self.search is None:
            self._show(READ_ONLY, ok=False)
            return
        try:
            act(self.search)
        except KaleError as e:
            self._show(f"{verb} search: {e}", ok=False)
            return
        self._show(f"{verb} search {self.search.name}: done", ok=True)
        self.after()

    # -- display ---------------------------------------------------------------------

    def set_live(self, live: bool) -> None:
        """Say whether the search still runs: once it ended, nothing is left to steer."""
        if live != self.live:
            self.live = live
            self._enable()

    def _enable(self) -> None:
        """Enable what applies: trial buttons need a selection, all need a running search."""
        running = self.search is not None and self.live
        for name, button in self.buttons.items():
            trial_button = not name.endswith("_search")
            button.disabled = not running or (trial_button and not self.table.selected)

    def _show(self, text: str, *, ok: bool, escaped: bool = False) -> None:
        colour = "#2b8a3e" if ok else "#c92a2a"
        body = text if escaped else html.escape(text)
        self.message.value = f'<span style="color:{colour}">{body}</span>'

    def _on_select(self, trials: list[int]) -> None:
        self.selection.value = (f"selected trial(s): <b>{', '.join(map(str, trials))}</b>"
                                if trials else "no trial selected")
        self._enable()
        if trials and self.editor is not None:
            with contextlib.suppress(KeyError):  # a trial not yet read from the store
                self.editor.load(self.config_of(trials[0]))
