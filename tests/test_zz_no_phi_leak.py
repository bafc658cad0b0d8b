"""Runs last (see tests/conftest.py): no planted identifier may appear in any file the
session wrote outside the directories marked as message stores."""

from __future__ import annotations

import pytest

from tests import planted


def test_no_planted_value_in_logs_or_audit(tmp_path_factory: pytest.TempPathFactory) -> None:
    roots = [tmp_path_factory.getbasetemp(), *planted.registered_scan_dirs()]
    leaks = planted.find_leaks(roots)
    report = "\n".join(f"  {leak.path}: {leak.name}" for leak in leaks)
    assert not leaks, f"planted identifiers found outside message stores:\n{report}"
