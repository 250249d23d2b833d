"""Benchmark targets: each a ratio of kale's figure to a baseline measured side by side in
the same run, never an absolute time, so that a slow or loaded machine slows both sides.

A benchmark records every ratio it prints through :class:`Targets` and calls
:meth:`Targets.assert_met` at its end: all figures are printed before a missed target
fails the test.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Targets:
    """The ratios of one benchmark and the targets they missed."""

    missed: list[str] = field(default_factory=list)

    def ratio(self, what: str, value: float, baseline: float, *, at_most: float | None = None,
              at_least: float | None = None) -> float:
        """Print ``value / baseline`` against its bound; note it when it misses; return it."""
        if (at_most is None) == (at_least is None):
            raise ValueError(f"{what}: give exactly one of at_most or at_least")
        ratio = value / baseline
        if at_most is not None:
            met, rule = ratio <= at_most, f"<= {at_most}"
        else:
            assert at_least is not None
            met, rule = ratio >= at_least, f">= {at_least}"
        line = (f"{what}: ratio {ratio:.3f} ({value:.4g} / baseline {baseline:.4g}), "
                f"target {rule}: {'met' if met else 'NOT MET'}")
        print(line)
        if not met:
            self.missed.append(line)
        return ratio

    def assert_met(self) -> None:
        """Fail naming every missed target."""
        assert not self.missed, "target(s) missed:\n" + "\n".join(self.missed)
