"""Under CI=true a skip fails the run with its reason in one line (tests/no_skips_in_ci.py)."""

from __future__ import annotations

import pytest

from tests import no_skips_in_ci

SKIPPING = """
import pytest

@pytest.fixture
def peer():
    pytest.skip("the peer server is not installed")

def test_skips_in_its_body():
    pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432")

def test_needs_a_peer(peer):
    pass

@pytest.mark.skipif(True, reason="chromedriver is missing")
def test_skipped_by_a_mark():
    pass

@pytest.mark.xfail(strict=True, reason="a known gap")
def test_a_known_gap():
    assert False

def test_allowed():
    pytest.skip("a declared gap")

def test_passes():
    pass
"""

IMPORTORSKIP = """
import pytest

pytest.importorskip("no_such_peer_module_7781")

def test_never_collected():
    pass
"""


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    pytester.makepyfile(test_skipping=SKIPPING, test_importorskip=IMPORTORSKIP)
    monkeypatch.setitem(
        no_skips_in_ci.CI_MAY_SKIP, "test_skipping.py::test_allowed", "declared in the test"
    )
    return pytester


def test_in_ci_every_skip_fails_with_its_reason_in_one_line(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    result = inner.runpytest_inprocess("-p", "tests.no_skips_in_ci", "-ra", "test_skipping.py")
    result.assert_outcomes(passed=1, failed=1, errors=2, skipped=1, xfailed=1)
    result.stdout.fnmatch_lines_random(
        [
            "FAILED test_skipping.py::test_skips_in_its_body - Failed: CI=true allows no skip: "
            "PostgreSQL is not reachable at 127.0.0.1:5432",
            "ERROR test_skipping.py::test_needs_a_peer - Failed: CI=true allows no skip: "
            "the peer server is not installed",
            "ERROR test_skipping.py::test_skipped_by_a_mark - Failed: CI=true allows no skip: "
            "chromedriver is missing",
            "SKIPPED * test_skipping.py:*: a declared gap",
        ]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_in_ci_a_module_that_skips_on_import_fails_the_run(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    result = inner.runpytest_inprocess("-p", "tests.no_skips_in_ci", "test_importorskip.py")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "ERROR test_importorskip.py - Failed: CI=true allows no skip: "
            "could not import 'no_such_peer_module_7781'*",
        ]
    )
    assert result.ret == pytest.ExitCode.INTERRUPTED


def test_outside_ci_skips_stay_skips(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    result = inner.runpytest_inprocess("-p", "tests.no_skips_in_ci")
    result.assert_outcomes(passed=1, skipped=5, xfailed=1)
    assert result.ret == pytest.ExitCode.OK


def test_the_allowed_skips_name_a_reason_each() -> None:
    assert all(reason.strip() for reason in no_skips_in_ci.CI_MAY_SKIP.values())
