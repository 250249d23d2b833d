"""The ``kale`` command line: profiles, the development Slurm, and the shared plumbing.

Each subcommand group is a function that takes argparse's subparsers object and adds
its parsers, each with ``set_defaults(func=handler)``; a handler takes the parsed
arguments and returns the exit code. Groups are listed in ``COMMAND_GROUPS``
(``"module:function"``, imported only when the command line runs) and may also come
from the ``kale_ext.cli`` entry-point group, so other modules and packages add
``kale search ...`` or ``kale kernels ...`` without touching this file's logic.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, is_dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import yaml

from kale_ext._errors import KaleError

COMMAND_GROUPS: tuple[str, ...] = (
    "kale_ext.cli_cluster:register_cluster_commands",
    "kale_ext.cli:register_profile_commands",
    "kale_ext.cli:register_slurm_dev_commands",
    "kale_ext.cli_jupyter:register_search_commands",
    "kale_ext.cli_jupyter:register_kernel_commands",
)

Registrar = Callable[[Any], None]


# -- output helpers, shared by every group ---------------------------------------
def add_json_flag(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` the ``--json`` flag (machine-readable output)."""
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print JSON instead of a table")


def wants_json(args: argparse.Namespace) -> bool:
    """Whether the command was given ``--json``."""
    return bool(getattr(args, "json", False))


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON; dataclasses through their ``to_dict``."""

    def default(o: Any) -> Any:
        if is_dataclass(o) and not isinstance(o, type):
            return o.to_dict() if hasattr(o, "to_dict") else asdict(o)
        return str(o)

    print(json.dumps(data, indent=2, default=default, sort_keys=True))


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """Render ``rows`` under ``headers`` as a plain text table, columns left-aligned."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r]
                                             for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in cells)


def size(n: int) -> str:
    """Format ``n`` bytes for people: ``512 B``, ``1.5 GiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


# -- KEY=VALUE options --------------------------------------------------------
def key_value(text: str) -> tuple[str, Any]:
    """Parse a ``KEY=VALUE`` command-line option; argparse's ``type`` for ``-o``.

    Parameters
    ----------
    text
        ``KEY=VALUE``; dashes in ``KEY`` become underscores, ``VALUE`` is YAML.

    Returns
    -------
    tuple of (str, Any)
        The keyword name and the typed value.

    Raises
    ------
    argparse.ArgumentTypeError
        When ``text`` has no ``=`` or an empty key.
    """
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--option {text!r} is not KEY=VALUE, "
                                         "for example --option job_extra='[--exclusive]'")
    # YAML gives numbers, booleans and lists their types: cores=4, prologue=[a, b].
    return key.replace("-", "_"), yaml.safe_load(value)


# -- kale profiles ------------------------------------------------------------
def register_profile_commands(sub: Any) -> None:
    """``kale profiles``."""
    p = sub.add_parser("profiles", help="site profiles start_cluster can use")
    add_json_flag(p)
    p.set_defaults(func=_profiles)


def _profiles(args: argparse.Namespace) -> int:
    from kale_ext import config

    known = config.profiles()
    default = config.get("default-profile") or "local"
    if wants_json(args):
        print_json({"default": default, "profiles": known})
        return 0
    rows = [(f"{name}{' *' if name == default else ''}", p.get("kind", "-"),
             p.get("backend", "-"), p.get("workers", "-"), p.get("queue") or "-",
             p.get("cores", "-"), p.get("memory", "-"), p.get("walltime", "-"))
            for name, p in sorted(known.items())]
    print(table(rows, ("PROFILE", "KIND", "BACKEND", "WORKERS", "QUEUE", "CORES", "MEMORY",
                       "WALLTIME")))
    print("\n* default profile (kale.default-profile)")
    return 0


# -- kale slurm-dev -----------------------------------------------------------
def slurm_dev_dir() -> Path:
    """Find the deploy/slurm-dev folder: $KALE_SLURM_DEV_DIR, the source tree, or the cwd."""
    if os.environ.get("KALE_SLURM_DEV_DIR"):  # an explicit choice is the only one tried
        candidates = [Path(os.environ["KALE_SLURM_DEV_DIR"])]
    else:
        candidates = [Path(__file__).resolve().parent.parent / "deploy" / "slurm-dev",
                      Path.cwd() / "deploy" / "slurm-dev"]
    for path in candidates:
        if (path / "up.sh").is_file():
            return path
    raise KaleError(
        "Cannot find deploy/slurm-dev/up.sh (looked in "
        f"{', '.join(str(c) for c in candidates)}). It ships with the kale_ext source "
        "tree: run kale from a checkout or set KALE_SLURM_DEV_DIR to its deploy/slurm-dev."
    )


def register_slurm_dev_commands(sub: Any) -> None:
    """``kale slurm-dev up|down|status``."""
    p = sub.add_parser("slurm-dev", help="the one-node development Slurm on loopback")
    p.add_argument("action", choices=("up", "down", "status"))
    p.set_defaults(func=_slurm_dev)


def _slurm_dev(args: argparse.Namespace) -> int:
    script = slurm_dev_dir() / f"{args.action}.sh"
    return subprocess.run(["bash", str(script)], check=False).returncode


# -- entry point ----------------------------------------------------------------
def _registrars() -> list[Registrar]:
    found: list[Registrar] = []
    for target in COMMAND_GROUPS:
        module, _, name = target.partition(":")
        found.append(getattr(importlib.import_module(module), name))
    for ep in entry_points(group="kale_ext.cli"):
        found.append(ep.load())
    return found


def build_parser() -> argparse.ArgumentParser:
    """Build the ``kale`` parser with every registered command group."""
    parser = argparse.ArgumentParser(
        prog="kale", description="Clusters, searches and training for interactive HPC.")
    parser.add_argument("--debug", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in _registrars():
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``kale`` command line on ``argv``; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.debug:
        # A CLI client connecting and leaving is not worth distributed's warnings.
        logging.getLogger("distributed").setLevel(logging.ERROR)
    try:
        return int(args.func(args))
    except KaleError as e:
        print(f"kale: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
