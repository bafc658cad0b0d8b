"""A pymilter milter that accepts every message and does nothing else (a baseline).

It measures what libmilter, pymilter and Postfix's milter protocol cost by themselves,
so that postveil's own cost can be separated from them. ``--callbacks`` picks which
optional callbacks it negotiates:

- ``minimal``: only end of message; Postfix skips every other optional command;
- ``postveil``: the callbacks postveil-milter negotiates on a TCP socket (HELO,
  envelope, DATA, headers, body, end of message), each with a reply;
- ``quiet``: the callbacks postveil-milter negotiates on a unix socket (envelope,
  headers and body without a reply, then end of message);
- ``quietflags``: as ``quiet``, and it also asks for the actions postveil-milter asks
  for (change headers, body and recipients, set the macro list), without using them.

    .venv/bin/python bench/trivial_milter.py --socket inet:9999@127.0.0.1 --callbacks minimal
"""

from __future__ import annotations

import argparse
import os

import Milter


class MinimalMilter(Milter.Base):
    """Negotiates nothing but end of message."""

    def eom(self) -> int:
        return Milter.ACCEPT


class PostveilShapedMilter(Milter.Base):
    """Negotiates the same callbacks as postveil-milter and keeps the body in memory."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def hello(self, hostname: str) -> int:
        return Milter.CONTINUE

    def envfrom(self, mailfrom: str, *params: str) -> int:
        self.chunks = []
        return Milter.CONTINUE

    def envrcpt(self, recipient: str, *params: str) -> int:
        return Milter.CONTINUE

    def data(self) -> int:
        return Milter.CONTINUE

    def header(self, name: str, value: str) -> int:
        return Milter.CONTINUE

    def body(self, chunk: bytes) -> int:
        self.chunks.append(chunk)
        return Milter.CONTINUE

    def eom(self) -> int:
        return Milter.ACCEPT


class QuietMilter(Milter.Base):
    """Negotiates what postveil-milter does on a unix socket and keeps the body."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    @Milter.noreply
    def envfrom(self, mailfrom: str, *params: str) -> int:
        self.chunks = []
        return Milter.CONTINUE

    @Milter.noreply
    def envrcpt(self, recipient: str, *params: str) -> int:
        return Milter.CONTINUE

    @Milter.noreply
    def header(self, name: str, value: str) -> int:
        return Milter.CONTINUE

    @Milter.noreply
    def body(self, chunk: bytes) -> int:
        self.chunks.append(chunk)
        return Milter.CONTINUE

    def eom(self) -> int:
        return Milter.ACCEPT


CLASSES = {"minimal": MinimalMilter, "postveil": PostveilShapedMilter, "quiet": QuietMilter, "quietflags": QuietMilter}
# The actions postveil-milter requests at negotiation (postveil.milter.daemon).
POSTVEIL_FLAGS = (
    Milter.ADDHDRS | Milter.CHGHDRS | Milter.CHGBODY | Milter.ADDRCPT | Milter.DELRCPT | Milter.CHGFROM
    | Milter.SETSYMLIST
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True, help="libmilter socket, for example inet:9999@127.0.0.1")
    parser.add_argument("--callbacks", choices=tuple(CLASSES), default="postveil")
    args = parser.parse_args()
    if args.socket.startswith("inet") and not args.socket.endswith(("@127.0.0.1", "@localhost", "@[::1]")):
        parser.error("the benchmark milter listens on loopback only: use inet:PORT@127.0.0.1")
    Milter.factory = CLASSES[args.callbacks]
    Milter.set_flags(POSTVEIL_FLAGS if args.callbacks == "quietflags" else 0)
    # Postfix's smtpd runs as the postfix user: let it connect to a unix socket.
    os.umask(0o000)
    Milter.runmilter("bench-trivial", args.socket, timeout=60)


if __name__ == "__main__":
    main()
