"""The built-in portal wired into a private Postfix, for tests and the demo.

Postfix's pipe(8) refuses to run a command as root, so the intake runs as PIPE_USER.
postveil-portal runs as the same user, because the store is an SQLite database in
WAL mode: a root process would create ``-wal`` and ``-shm`` files that the intake
cannot write. The portal therefore also gets an audit trail of its own, owned by
PIPE_USER, apart from the one that the milter and policyd write as root.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import postveil
from postveil.audit import generate_key_file
from postveil.harness.daemons import DaemonProcess
from postveil.harness.net import free_port, port_open
from postveil.harness.postfix import PrivatePostfix

PIPE_USER = "nobody"
PIPE_GROUP = "nogroup"

PIPE_SERVICE = """\
portal    unix  -       n       n       -       -       pipe
  flags=X user={user}:{group}
  argv=/usr/bin/env PYTHONPATH={pythonpath} PYTHONDONTWRITEBYTECODE=1
    {python} -P -m postveil.cli.main portal deliver -c {config}
    --queue-id=${{queue_id}} --sender=${{sender}}
"""
"""master.cf entry of the intake, as in conf/postfix/master.cf.portal but run with
``python -m`` (see :func:`pipe_python`)."""


class PortalHarnessError(RuntimeError):
    """The built-in portal cannot be set up on this machine."""


def pipe_pythonpath() -> str:
    """Return the PYTHONPATH under which PIPE_USER imports this checkout's postveil and
    the current interpreter's packages."""
    paths = sysconfig.get_paths()
    site_packages = sorted({paths["purelib"], paths["platlib"]})
    source = Path(postveil.__file__).resolve().parents[1]
    return ":".join([str(source), *site_packages])


def pipe_environment(pythonpath: str) -> dict[str, str]:
    """Return the whole environment for a process that runs as PIPE_USER."""
    return {"PYTHONPATH": pythonpath, "PYTHONDONTWRITEBYTECODE": "1", "PATH": "/usr/bin:/bin"}


def pipe_python(pythonpath: str) -> str:
    """Return an interpreter that PIPE_USER can run and that imports postveil with
    ``pythonpath``; raise PortalHarnessError naming each interpreter tried and why it
    failed.

    The current interpreter comes first. The pipe user cannot run a virtualenv whose
    interpreter lives under a directory that only root may enter (such as
    /root/.pyenv). The system interpreter of the same version is tried next, with the
    virtualenv's site-packages on the path.
    """
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    problems = []
    for interpreter in (sys.executable, f"/usr/bin/python{version}"):
        try:
            probe = run_as_pipe_user(
                [interpreter, "-P", "-c", "import postveil.portal.intake, postveil.portal.daemon"],
                pythonpath,
            )
        except OSError as exc:
            problems.append(f"{interpreter}: {exc.strerror}")
            continue
        if probe.returncode == 0:
            return interpreter
        problems.append(f"{interpreter}: {probe.stderr.strip().splitlines()[-1:]}")
    raise PortalHarnessError(
        f"no Python that user {PIPE_USER} can run imports postveil: {problems}"
    )


def run_as_pipe_user(
    command: list[str], pythonpath: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` as PIPE_USER in / and return its exit status and output."""
    return subprocess.run(
        command,
        user=PIPE_USER,
        group=PIPE_GROUP,
        extra_groups=[],
        cwd="/",
        env=pipe_environment(pythonpath),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def own(path: Path, mode: int) -> None:
    """Give ``path`` to PIPE_USER with ``mode``."""
    shutil.chown(path, PIPE_USER, PIPE_GROUP)
    path.chmod(mode)


@dataclass
class BuiltinPortal:
    """The files, Postfix wiring and daemon of one built-in portal.

    Create it with :meth:`prepare`, write a configuration whose ``portal`` and
    ``audit`` sections come from :meth:`portal_settings` and :meth:`audit_settings`,
    then call :meth:`setup` with that file, :meth:`wire` and :meth:`start_daemon`.
    """

    directory: Path
    intake_address: str
    port: int
    """TCP port of postveil-portal on 127.0.0.1."""
    pythonpath: str
    python: str
    config_path: Path | None = None

    @classmethod
    def prepare(cls, directory: Path, intake_address: str) -> BuiltinPortal:
        """Create ``directory`` and the portal's audit key in it, and find the
        interpreter for PIPE_USER; raise PortalHarnessError when there is none."""
        pythonpath = pipe_pythonpath()
        python = pipe_python(pythonpath)
        directory.mkdir(mode=0o755)
        (directory / "keys").mkdir(mode=0o755)
        audit_directory = directory / "audit"
        audit_directory.mkdir()
        own(audit_directory, 0o750)
        generate_key_file(directory / "keys" / "audit.key")
        own(directory / "keys" / "audit.key", 0o600)
        return cls(directory, intake_address, free_port(), pythonpath, python)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def store_directory(self) -> Path:
        return self.directory / "store"

    @property
    def audit_directory(self) -> Path:
        return self.directory / "audit"

    def portal_settings(self, relay_port: int, **extra: Any) -> dict[str, Any]:
        """Return the ``portal`` section; notifications and codes go to Postfix on
        ``relay_port`` (its re-injection listener)."""
        keys = self.directory / "keys"
        return {
            "intake_address": self.intake_address,
            "seal_key_file": str(keys / "seal.key"),
            "key_file": str(keys / "portal.key"),
            "store_directory": str(self.store_directory),
            "base_url": self.base_url,
            "listen": f"127.0.0.1:{self.port}",
            "notify_relay": f"127.0.0.1:{relay_port}",
            **extra,
        }

    def audit_settings(self) -> dict[str, str]:
        return {
            "directory": str(self.audit_directory),
            "key_file": str(self.directory / "keys" / "audit.key"),
        }

    def setup(self, config_path: Path) -> str:
        """Run ``postveil portal init`` with ``config_path`` and give the store and keys
        to PIPE_USER; return what init printed. ``config_path`` must be readable by
        PIPE_USER, because the intake and the daemon read it."""
        self.config_path = config_path
        keys = self.directory / "keys"
        init = subprocess.run(
            [sys.executable, "-m", "postveil.cli.main", "portal", "init", "-c", str(config_path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if init.returncode != 0:
            raise PortalHarnessError(f"postveil portal init failed: {init.stderr.strip()}")
        own(self.store_directory, 0o700)
        own(keys / "portal.key", 0o600)
        own(keys / "seal.key", 0o640)
        return init.stdout

    def wire(self, postfix: PrivatePostfix) -> None:
        """Add the pipe service and route the intake address to it. Also reject the
        intake address at RCPT, in front of the restrictions already set (or of
        ``permit_mynetworks, reject`` when none are), as conf/postfix/main.cf.portal
        does."""
        if self.config_path is None:
            raise PortalHarnessError("call setup() before wire()")
        postfix.set_service(
            "portal",
            PIPE_SERVICE.format(
                user=PIPE_USER,
                group=PIPE_GROUP,
                pythonpath=self.pythonpath,
                python=self.python,
                config=self.config_path,
            ),
        )
        restrictions = postfix.main_cf().get(
            "smtpd_recipient_restrictions", "permit_mynetworks, reject"
        )
        postfix.configure(
            transport_maps=f"inline:{{{self.intake_address}=portal:}}",
            portal_destination_recipient_limit="1",
            smtpd_recipient_restrictions=(
                f"check_recipient_access inline:{{{self.intake_address}=REJECT}}, {restrictions}"
            ),
        )

    def start_daemon(self, log_path: Path) -> DaemonProcess:
        """Start postveil-portal as PIPE_USER; return once it accepts connections."""
        if self.config_path is None:
            raise PortalHarnessError("call setup() before start_daemon()")
        return DaemonProcess(
            "postveil.portal",
            self.config_path,
            log_path,
            ready=lambda: port_open("127.0.0.1", self.port),
            interpreter=[self.python, "-P"],
            env=pipe_environment(self.pythonpath),
            user=PIPE_USER,
            group=PIPE_GROUP,
        ).start()

    def status(self) -> str:
        """Return the output of ``postveil portal status``, run as the store's owner."""
        if self.config_path is None:
            raise PortalHarnessError("call setup() before status()")
        result = run_as_pipe_user(
            [
                self.python,
                "-P",
                "-m",
                "postveil.cli.main",
                "portal",
                "status",
                "-c",
                str(self.config_path),
            ],
            self.pythonpath,
        )
        if result.returncode != 0:
            raise PortalHarnessError(f"postveil portal status failed: {result.stderr.strip()}")
        return result.stdout
