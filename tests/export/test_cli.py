"""``kale search export NAME --to ...``: by registered name or by store path."""

from __future__ import annotations

import json

import dask.config
import pytest

from kale_ext.cli import main


@pytest.fixture
def registry_of(search):
    """The registry the search was started under (its store lies in the same folder)."""
    with dask.config.set({"kale.state-dir": str(search.store_path.parent)}):
        yield


def test_export_by_name(search, registry_of, tmp_path, capsys):
    assert main(["search", "export", search.name, "--to", "csv", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "exported 6 trials and" in out and f"{search.name}.trials.csv" in out
    assert (tmp_path / f"{search.name}.metrics.csv").exists()


def test_export_by_path_as_json(search, tmp_path, capsys):
    args = ["search", "export", str(search.store_path), "--to", "optuna", "--dir",
            str(tmp_path), "--json"]
    assert main(args) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["target"] == "optuna" and done["trials"] == 6
    assert done["location"] == f"sqlite:///{(tmp_path / 'optuna.db').resolve()}"


def test_an_unknown_search_is_an_error(registry_of, tmp_path, capsys):
    assert main(["search", "export", "no-such-search", "--to", "csv",
                 "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "'no-such-search'" in err and "kale search list" in err


def test_an_unknown_target_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        main(["search", "export", "x", "--to", "wandb"])
    assert "invalid choice: 'wandb'" in capsys.readouterr().err
