"""Internal errors are swallowed in production, counted, logged once, and fail the test suite."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import promptops
from promptops._errors import log_internal_error


@pytest.mark.internal_errors_expected
def test_logged_once_per_site_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="promptops"):
        for _ in range(3):
            try:
                raise RuntimeError("our bug")
            except RuntimeError:
                log_internal_error("somewhere")
    errors = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "somewhere" in errors[0].getMessage() and errors[0].exc_info is not None
    assert promptops.stats()["internal_errors"] == 3


def test_the_suite_fails_a_test_that_logged_an_internal_error(pytester: pytest.Pytester) -> None:
    root = Path(__file__).parents[2]
    pytester.makeini(f"[pytest]\npythonpath = {root}\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest("from tests.conftest import _isolate  # the real autouse fixture\n")
    pytester.makepyfile(
        """
        from promptops._errors import log_internal_error

        def test_quiet_bug():
            try:
                1 / 0
            except ZeroDivisionError:
                log_internal_error("demo")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)  # the call itself passed; teardown reports the error
    result.stdout.fnmatch_lines(["*promptops logged internal errors:*", "*internal error in demo*"])
