"""A cluster shows itself through the ``kale_ext.views`` hook, never by importing widgets."""

from __future__ import annotations

import sys

import IPython.display
import pytest

from kale_ext import views
from kale_ext.clusters import status_html
from tests.clusters.thread_backend import ThreadCluster
from tests.conftest import run_python


@pytest.fixture
def shown(monkeypatch):
    out: list[object] = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **kw: out.extend(objs))
    return out


@pytest.fixture
def cluster():
    c = ThreadCluster(2)
    yield c
    c.stop()


def test_the_registered_view_is_the_live_widget(cluster, shown, monkeypatch):
    pytest.importorskip("ipywidgets")
    from kale_ext.widgets import ClusterWidget

    factory = views.view_factory("cluster")
    assert factory is ClusterWidget
    built: list[ClusterWidget] = []
    monkeypatch.setattr(views, "view_factory",  # keep the widget to stop its updater
                        lambda name: lambda c: built.append(factory(c)) or built[-1])
    cluster._ipython_display_()
    try:
        assert len(built) == 1 and shown == [built[0].widget]
        assert cluster.id in built[0].view.value  # the status HTML inside it
    finally:
        for widget in built:
            widget.close()


@pytest.mark.parametrize("factory", [None, "raises"])
def test_without_a_usable_view_the_html_status_is_shown(cluster, shown, monkeypatch, factory):
    def broken(_cluster):
        raise RuntimeError("no front end")

    monkeypatch.setattr(views, "view_factory",
                        lambda name: broken if factory == "raises" else None)
    cluster._ipython_display_()
    assert len(shown) == 1 and isinstance(shown[0], IPython.display.HTML)
    assert shown[0].data == status_html(cluster.status())
    assert "thread-1" in shown[0].data


def test_clusters_import_no_widgets():
    out = run_python("import sys, kale_ext.clusters\n"
                     "print(sorted(m for m in sys.modules if m.startswith('kale_ext.widgets')))")
    assert out.strip() == "[]"
    assert "kale_ext.clusters" in sys.modules
