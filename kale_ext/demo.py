"""``make demo``: a real hyperparameter search on the embedded default (a local cluster).

A small CNN on scikit-learn's digits, sampled by Optuna's TPE, early-stopped by
ASHA, with a live table in the terminal. Ends with the best trial, a results CSV
and the path of the store (``kale search show <store>`` reads it back).

    python -m kale_ext.demo [--trials 16] [--workers 2] [--out runs/]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.table import Table

import kale_ext as kale
from kale_ext.models import DIGITS_SPACE, train_digits_cnn

_COLUMNS = ("status", "epoch", "lr", "dropout", "channels", "optimizer", "batch_size",
            "loss", "val_loss", "acc", "val_acc")


def _table(search: kale.Search, started: float) -> Table:
    frame = search.results()
    states = frame["state"].value_counts().to_dict() if len(frame) else {}
    best = search.best
    title = (f"{search.name}: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
             + f"  |  {time.time() - started:.0f} s"
             + (f"  |  best val_acc {best['value']:.4f} (trial {best['trial']})" if best else ""))
    table = Table(title=title, title_justify="left")
    table.add_column("trial", justify="right")
    for name in _COLUMNS:
        table.add_column(name, justify="left" if name in ("status", "optimizer") else "right")
    for _, row in frame.tail(24).iterrows():
        cells = [str(row["trial"])]
        for name in _COLUMNS:
            value = row.get("state" if name == "status" else name)
            cells.append(f"{value:.4g}" if isinstance(value, float) else
                         ("" if value is None else str(value)))
        table.add_row(*cells)
    return table


def store_hint(store: Path | str) -> str:
    """Return the demo's last line: where its store is and the command that reads it back."""
    import shlex

    return f"Store: {store}\nRead it back with: kale search show {shlex.quote(str(store))}"


def main(argv: list[str] | None = None) -> int:
    """Run the demo search with live progress; 0 when it found a best trial."""
    parser = argparse.ArgumentParser(prog="python -m kale_ext.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="runs", help="folder for the store and results CSV")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.live import Live

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"digits-{time.strftime('%Y%m%d-%H%M%S')}"
    console = Console(width=None if sys.stdout.isatty() else 150)
    console.print(f"Starting a local cluster with {args.workers} workers ...")
    with kale.start_cluster("local", workers=args.workers) as cluster:
        search = kale.Search(
            train_digits_cnn, DIGITS_SPACE, metric="val_acc", mode="max", algorithm="tpe",
            scheduler=kale.ASHA(max_t=9, grace_period=1, reduction_factor=3),
            trials=args.trials, cluster=cluster, store=out / f"{name}.kale.sqlite",
            name=name, seed=args.seed,
        )
        started = time.time()
        search.start()
        with Live(_table(search, started), console=console, refresh_per_second=2) as live:
            while search.running:
                time.sleep(0.5)
                live.update(_table(search, started))
            live.update(_table(search, started))
        search.wait()
    frame = search.results()
    csv = out / f"{name}.csv"
    frame.to_csv(csv, index=False)
    best = search.best
    console.print(f"\n{len(frame)} trials in {time.time() - started:.0f} s: "
                  + ", ".join(f"{n} {s}" for s, n in frame["state"].value_counts().items()))
    if best is not None:
        console.print(f"Best: trial {best['trial']} val_acc={best['value']:.4f} "
                      f"config={best['config']}")
    console.print(f"Results CSV: {csv}\n{store_hint(search.store_path)}", markup=False,
                  highlight=False)
    return 0 if best is not None else 1


if __name__ == "__main__":
    sys.exit(main())
