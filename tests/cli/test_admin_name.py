"""Actor of admin records: the person behind ``runuser``/``su``, found by the session's
login uid, which the kernel keeps across changes of the effective user."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PRINT_ADMIN_NAME = "from postveil.cli.admin_audit import admin_name; print(admin_name())"


def admin_name_in_session(loginuid: int | None, sudo_user: str | None = None) -> str:
    """Run admin_name() in a child whose session has ``loginuid`` and no terminal.

    Setting /proc/self/loginuid needs CAP_AUDIT_CONTROL and a not yet set value, as a
    login through pam_loginuid does it, so the test is skipped where the kernel refuses.
    """
    environment = {key: value for key, value in os.environ.items() if key != "SUDO_USER"}
    if sudo_user is not None:
        environment["SUDO_USER"] = sudo_user
    script = f'exec "{sys.executable}" -c "{PRINT_ADMIN_NAME}"'
    if loginuid is not None:
        script = f"echo {loginuid} > /proc/self/loginuid || exit 77; {script}"
    result = subprocess.run(
        ["setsid", "sh", "-c", script], env=environment, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=60, check=False,
    )
    if result.returncode == 77:
        pytest.skip("cannot set /proc/self/loginuid here")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_login_uid_named() -> None:
    # The process runs as root (or the test user), but the session belongs to the user nobody.
    assert admin_name_in_session(65534) == "nobody"


def test_login_uid_without_name() -> None:
    assert admin_name_in_session(54321) == "54321"


def test_sudo_user_first() -> None:
    assert admin_name_in_session(65534, sudo_user="alice") == "alice"


def test_no_session_effective_user() -> None:
    if open("/proc/self/loginuid").read().strip() != str(2**32 - 1):
        pytest.skip("this test process runs inside a login session")
    import getpass

    assert admin_name_in_session(None) == getpass.getuser()
