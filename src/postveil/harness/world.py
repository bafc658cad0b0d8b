"""Invented test domains wired to real fixtures, a private Postfix and the daemons.

A :class:`World` owns one runtime directory with everything a test or the demo
needs: the test CA, the DNS fixture (port 53 on its own loopback address, so that
Postfix's resolver can use it), the MTA-STS HTTPS fixture, one SMTP sink per MX
host, and optionally a private Postfix with postveil-milter attached.

The runtime directory lives under ``$POSTVEIL_HARNESS_ROOT`` (default
``/tmp/postveil-harness``) rather than pytest's private temp directory, because
Postfix's unprivileged daemons must be able to reach the queue and milter socket.
:meth:`World.stop` removes it unless ``keep`` is set, for example through
``$POSTVEIL_KEEP_HARNESS``; directories of other runs are never touched.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from postveil.harness.daemons import DaemonProcess
from postveil.harness.dns import DnsFixture
from postveil.harness.https import HttpsFixture
from postveil.harness.net import allocate_address, free_port, port_open
from postveil.harness.pki import TestPKI
from postveil.harness.postfix import PrivatePostfix
from postveil.harness.smtp import MailSpool, SmtpSink, TlsMode

if TYPE_CHECKING:
    from postveil.harness.recipients import PgpRecipient, SmimeRecipient

HARNESS_ROOT_ENV = "POSTVEIL_HARNESS_ROOT"
DEFAULT_HARNESS_ROOT = "/tmp/postveil-harness"
KEEP_ENV = "POSTVEIL_KEEP_HARNESS"


def keep_requested() -> bool:
    """Return whether ``$POSTVEIL_KEEP_HARNESS`` requests keeping runtime directories.

    Any value other than empty, ``0``, ``no`` or ``false`` (in any case) keeps them.
    """
    return os.environ.get(KEEP_ENV, "").strip().lower() not in ("", "0", "no", "false")


def harness_root() -> Path:
    root = Path(os.environ.get(HARNESS_ROOT_ENV, DEFAULT_HARNESS_ROOT))
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o711)
    return root


@dataclass
class TestDomain:
    """One invented recipient domain and its single MX sink."""

    __test__ = False

    name: str
    mx_host: str
    sink: SmtpSink
    mta_sts_mode: str | None = None
    mta_sts_id: str | None = None
    dane: bool = False


class World:
    """Fixtures for a set of invented domains. Use as a context manager."""

    def __init__(self, base_dir: Path | None = None, *, keep: bool = False, save_mail: bool = False) -> None:
        """Create the runtime directory; nothing listens until :meth:`start`.

        ``keep`` leaves the directory in place after :meth:`stop`; callers may change
        the attribute until then. ``save_mail`` makes every sink also write what it
        accepts to ``<base_dir>/mail`` (see :class:`MailSpool`).
        """
        if base_dir is None:
            base_dir = Path(tempfile.mkdtemp(prefix="world-", dir=harness_root()))
        self.base_dir = Path(base_dir)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.base_dir.chmod(0o711)
        self.keep = keep
        self.pki = TestPKI(self.base_dir / "pki")
        self.dns = DnsFixture(allocate_address(), 53)
        self.https = HttpsFixture(allocate_address(), self.pki, 443)
        self.domains: dict[str, TestDomain] = {}
        self.postfix: PrivatePostfix | None = None
        self.daemons: dict[str, DaemonProcess] = {}
        self.run_dir = self.base_dir / "run"
        self.run_dir.mkdir(exist_ok=True)
        self.run_dir.chmod(0o755)
        self.log_dir = self.base_dir / "log"
        self.log_dir.mkdir(exist_ok=True)
        self.socketmap_port = free_port()
        self.policy_port = free_port()
        self.spool = MailSpool(self.base_dir / "mail") if save_mail else None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> World:
        try:
            self.dns.start()
            self.https.start()
        except OSError as exc:
            self.stop()
            raise OSError(
                exc.errno, f"cannot start the DNS ({self.dns.address}:53) or HTTPS "
                f"({self.https.address}:443) fixture: {exc.strerror}"
            ) from exc
        return self

    def stop(self) -> None:
        """Stop everything this world started; one failing step does not skip the rest."""
        steps = [daemon.terminate for daemon in self.daemons.values()]
        if self.postfix is not None:
            steps.append(self.postfix.stop)
        steps += [domain.sink.stop for domain in self.domains.values()]
        steps += [self.https.stop, self.dns.stop, lambda: _stop_gpg_agents(self.base_dir)]
        errors = []
        for step in steps:
            try:
                step()
            except Exception as exc:  # keep stopping the rest, report at the end
                errors.append(exc)
        if not self.keep:
            shutil.rmtree(self.base_dir, ignore_errors=True)
        if errors:
            raise errors[0]

    def __enter__(self) -> World:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- domains -----------------------------------------------------------------

    def add_domain(
        self,
        name: str,
        *,
        tls: TlsMode = "valid",
        mta_sts: Literal["enforce", "testing", "none"] | None = None,
        dane: bool = False,
        max_age: int = 86400,
    ) -> TestDomain:
        """Create ``name`` with one MX host ``mx.<name>`` served by a fresh sink."""
        mx_host = f"mx.{name}"
        sink = SmtpSink(
            allocate_address(), self.pki if tls != "none" else None, hostname=mx_host, tls=tls, spool=self.spool
        )
        sink.start()
        self.dns.add(name, "MX", f"10 {mx_host}.")
        self.dns.add(mx_host, "A", sink.address)
        domain = TestDomain(name, mx_host, sink)
        if mta_sts is not None:
            self.publish_mta_sts(domain, mta_sts, max_age=max_age)
        if dane:
            self.publish_dane(domain)
        self.domains[name] = domain
        return domain

    def publish_mta_sts(self, domain: TestDomain, mode: str, *, max_age: int = 86400, policy_id: str = "20261204T000000") -> None:
        policy = f"version: STSv1\nmode: {mode}\nmx: {domain.mx_host}\nmax_age: {max_age}\n"
        self.dns.remove(f"_mta-sts.{domain.name}", "TXT")
        self.dns.add(f"_mta-sts.{domain.name}", "TXT", f"v=STSv1; id={policy_id};")
        self.dns.remove(f"mta-sts.{domain.name}", "A")
        self.dns.add(f"mta-sts.{domain.name}", "A", self.https.address)
        self.https.set_policy(domain.name, policy)
        domain.mta_sts_mode = mode
        domain.mta_sts_id = policy_id

    def publish_dane(self, domain: TestDomain) -> None:
        """Publish a DANE-EE ``3 1 1`` TLSA record for the sink's key and mark the zone secure."""
        leaf = self.pki.issue(domain.mx_host)
        cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
        spki = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        digest = hashlib.sha256(spki).hexdigest()
        self.dns.add(f"_25._tcp.{domain.mx_host}", "TLSA", f"3 1 1 {digest}")
        self.dns.set_secure(domain.name)
        self.dns.set_secure(domain.mx_host)
        domain.dane = True

    # -- Postfix and daemons -----------------------------------------------------

    def start_postfix(self, **settings: str) -> PrivatePostfix:
        self.postfix = PrivatePostfix(
            self.base_dir / "postfix",
            name="world",
            dns_nameserver=f"{self.dns.address}:53",
            ca_path=self.pki.ca_path,
            settings=settings,
        )
        return self.postfix.start()

    @property
    def milter_socket(self) -> Path:
        return self.run_dir / "milter.sock"

    @property
    def state_dir(self) -> Path:
        """Keys, certificates, the facts cache and the audit trail of this world's daemons."""
        return self.base_dir / "state"

    def prepare_state(self) -> None:
        """Create the GnuPG home, certificate directory and audit key (idempotent)."""
        from postveil.audit import generate_key_file

        (self.state_dir / "gnupg").mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.state_dir / "smime").mkdir(parents=True, exist_ok=True)
        (self.state_dir / "audit").mkdir(parents=True, exist_ok=True)
        key = self.state_dir / "audit.key"
        if not key.exists():
            generate_key_file(key)

    def base_config(self) -> dict[str, Any]:
        """Return a configuration that points every daemon at this world's fixtures."""
        self.prepare_state()
        postfix_port = self.postfix.reinject_port if self.postfix is not None else None
        return {
            "milter": {
                "socket": f"unix:{self.milter_socket}",
                "socket_mode": "0666",
                "socket_group": None,
                "shutdown_timeout": "8s",
                "reinject": f"127.0.0.1:{postfix_port or 10026}",
                "reinject_timeout": "30s",
                "reinject_store": str(self.state_dir / "reinjected.sqlite3"),
                # Without a private Postfix there are no rewrite maps to read.
                "check_recipient_rewrites": self.postfix is not None,
                "postfix_config_directory": str(self.postfix.config_dir) if self.postfix is not None else None,
            },
            "policyd": {
                "cache_path": str(self.state_dir / "tlsfacts.sqlite3"),
                "mta_sts_ca_file": str(self.pki.ca_path),
                "probe_ca_file": str(self.pki.ca_path),
                "mta_sts_https_port": self.https.port,
                "postfix_version": "3.7.11",
                "socketmap_listen": f"inet:127.0.0.1:{self.socketmap_port}",
                "policy_listen": f"inet:127.0.0.1:{self.policy_port}",
                "probe_new_domain_delay": "1s",
            },
            "pgp": {"gnupg_home": str(self.state_dir / "gnupg")},
            "smime": {
                "certificate_dir": str(self.state_dir / "smime"),
                "trust_store": str(self.pki.ca_path),
            },
            "audit": {
                "directory": str(self.state_dir / "audit"),
                "key_file": str(self.state_dir / "audit.key"),
            },
            "dns": {"nameservers": [self.dns.nameserver], "timeout": "2s", "lifetime": "4s"},
            "logging": {"level": "DEBUG"},
        }

    def write_config(self, config: dict[str, Any] | None = None, name: str = "postveil.yaml") -> Path:
        path = self.base_dir / name
        path.write_text(yaml.safe_dump(config if config is not None else self.base_config(), sort_keys=False))
        return path

    def add_pgp_recipient(self, address: str) -> PgpRecipient:
        """Create a PGP key pair for ``address`` and import the public key for postveil."""
        from postveil.harness.recipients import PgpRecipient

        self.prepare_state()
        return PgpRecipient.create(address, self.base_dir / "recipients", self.state_dir / "gnupg")

    def add_smime_recipient(self, address: str) -> SmimeRecipient:
        """Issue an S/MIME certificate for ``address`` and install it for postveil."""
        from postveil.harness.recipients import SmimeRecipient

        self.prepare_state()
        return SmimeRecipient.create(address, self.pki, self.state_dir / "smime")

    @property
    def socketmap_table(self) -> str:
        """The ``smtp_tls_policy_maps`` value that points Postfix at postveil-policyd."""
        return f"socketmap:inet:127.0.0.1:{self.socketmap_port}:postveil"

    def start_policyd(self, config_path: Path | None = None, *, attach: bool = True) -> DaemonProcess:
        """Start postveil-policyd; with ``attach``, Postfix uses it for TLS policy and at RCPT."""
        config_path = config_path or self.write_config()

        def listening() -> bool:
            return port_open("127.0.0.1", self.socketmap_port) and port_open("127.0.0.1", self.policy_port)

        daemon = DaemonProcess(
            "postveil.policyd.daemon", config_path, self.log_dir / "policyd.log", ready=listening
        ).start()
        self.daemons["policyd"] = daemon
        if attach and self.postfix is not None:
            self.postfix.configure(
                smtp_tls_policy_maps=self.socketmap_table,
                smtpd_recipient_restrictions=(
                    f"check_policy_service inet:127.0.0.1:{self.policy_port}, permit_mynetworks, reject"
                ),
            )
        return daemon

    def start_milter(self, config_path: Path | None = None) -> DaemonProcess:
        """Start postveil-milter and attach it to the private Postfix.

        Returns once the daemon logged that its socket has its final mode and group.
        A leftover socket file is the daemon's to handle: it removes a dead one and
        refuses to start over a live one.
        """
        from postveil.milter.daemon import READY_MESSAGE

        config_path = config_path or self.write_config()
        daemon = DaemonProcess(
            "postveil.milter.daemon",
            config_path,
            self.log_dir / "milter.log",
            ready=self.milter_socket.exists,
        ).start()
        daemon.wait_for_log(READY_MESSAGE)
        self.daemons["milter"] = daemon
        if self.postfix is not None:
            self.postfix.configure(smtpd_milters=f"unix:{self.milter_socket}")
        return daemon

    def stop_daemon(self, name: str) -> None:
        """Stop the daemon ``name`` and detach it from Postfix."""
        daemon = self.daemons.pop(name, None)
        if daemon is not None:
            daemon.terminate()
        if self.postfix is None:
            return
        if name == "milter":
            self.postfix.configure(smtpd_milters=None)
        elif name == "policyd":
            self.postfix.configure(smtp_tls_policy_maps=None, smtpd_recipient_restrictions=None)


def _stop_gpg_agents(directory: Path) -> None:
    """End the gpg-agent of every GnuPG home below ``directory`` (key generation starts them)."""
    if not directory.exists():
        return
    for home in [directory, *directory.rglob("*")]:
        if home.is_dir() and (home / "pubring.kbx").exists():
            subprocess.run(
                ["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
                capture_output=True, timeout=10, check=False,
            )
