"""Strict mode (tests/strict.py), run on small test files in pytester's sandboxes."""

from __future__ import annotations

import pytest

from tests.strict import ALLOWED, allowed, skip_reason

pytest_plugins = ["pytester"]

SKIPS = '''
import pytest

@pytest.fixture
def slurm():
    pytest.skip("no running Slurm on this machine: start it with deploy/slurm-dev/up.sh")

def test_body():
    pytest.skip("node is missing: install Node.js")

@pytest.mark.skipif(True, reason="the horovod module is not installed")
def test_marker():
    pass

def test_fixture(slurm):
    pass

def test_import():
    pytest.importorskip("kale_no_such_module_xyz")

def test_gpu():
    pytest.skip("needs a GPU: CUDA kernels")

@pytest.mark.xfail(reason="known")
def test_xfail():
    assert False

def test_passes():
    assert True
'''


def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, strict: str | None,
        *args: str) -> pytest.RunResult:
    if strict is None:
        monkeypatch.delenv("KALE_STRICT", raising=False)
    else:
        monkeypatch.setenv("KALE_STRICT", strict)
    return pytester.runpytest("-p", "tests.strict", "-p", "no:cacheprovider", "-rA",
                             "-W", "ignore::pytest.PytestAssertRewriteWarning", *args)


@pytest.mark.parametrize("value", [None, "", "0"])
def test_without_strict_mode_skips_stay_skips_with_their_reason(pytester, monkeypatch, value):
    pytester.makepyfile(test_skips=SKIPS)
    result = run(pytester, monkeypatch, value)
    result.assert_outcomes(passed=1, skipped=5, xfailed=1)
    result.stdout.fnmatch_lines_random(["*KALE_STRICT unset*",
                                 "SKIPPED*no running Slurm on this machine*",
                                 "SKIPPED*the horovod module is not installed*"])
    assert result.ret == pytest.ExitCode.OK


def test_strict_mode_fails_every_skip_but_an_allowed_reason(pytester, monkeypatch):
    pytester.makepyfile(test_skips=SKIPS)
    result = run(pytester, monkeypatch, "1")
    # A skip in the body fails the test; one in setup (marker, fixture) errors it.
    result.assert_outcomes(passed=1, failed=2, errors=2, skipped=1, xfailed=1)
    result.stdout.fnmatch_lines_random([
        "*KALE_STRICT=1: a skip fails unless*needs a GPU*",
        "FAILED test_skips.py::test_body - KALE_STRICT=1, skip fails*",
        "FAILED test_skips.py::test_import - KALE_STRICT=1, skip fails*",
        "ERROR test_skips.py::test_marker - KALE_STRICT=1, skip fails*",
        "ERROR test_skips.py::test_fixture - KALE_STRICT=1, skip fails*",
        "KALE_STRICT=1, skip fails: node is missing: install Node.js",
        "KALE_STRICT=1, skip fails: could not import 'kale_no_such_module_xyz'*",
        "KALE_STRICT=1, skip fails: the horovod module is not installed",
        "KALE_STRICT=1, skip fails: no running Slurm on this machine: start it with*",
        "SKIPPED*needs a GPU: CUDA kernels*",
        "XFAIL test_skips.py::test_xfail*",
    ])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_strict_mode_fails_a_module_level_skip_at_collection(pytester, monkeypatch):
    pytester.makepyfile(test_module='''
import pytest

ipywidgets = pytest.importorskip("kale_no_such_widgets_xyz")

def test_never_runs():
    pass
''')
    lenient = run(pytester, monkeypatch, None)
    lenient.assert_outcomes(skipped=1)
    strict = run(pytester, monkeypatch, "1")
    strict.assert_outcomes(errors=1)
    strict.stdout.fnmatch_lines(
        ["KALE_STRICT=1, skip fails: could not import 'kale_no_such_widgets_xyz'*"])
    assert strict.ret == pytest.ExitCode.INTERRUPTED


def test_skip_reasons_are_read_from_reports():
    assert skip_reason(("t.py", 3, "Skipped: no node")) == "no node"
    assert skip_reason("Skipped: no node") == "no node"
    assert allowed("needs a GPU: CUDA") and ALLOWED == ("needs a GPU",)
    assert not allowed("no running Slurm; needs a GPU")  # a prefix, not anywhere in the text
