"""Test harness: real servers on loopback for tests and the demo.

Everything here binds to addresses in 127.0.0.0/8 and talks to nothing else:

- :mod:`.net` hands out loopback addresses unique to this process, so fixtures can
  listen on the standard ports (25, 53, 443) without colliding with other runs;
- :mod:`.pki` is a throw-away certificate authority (trustme);
- :mod:`.dns` is an authoritative DNS server with MX, A, TXT and TLSA records,
  able to answer SERVFAIL or nothing at all;
- :mod:`.https` serves MTA-STS policy files;
- :mod:`.smtp` has SMTP sinks that record each message with its envelope and TLS facts;
- :mod:`.postfix` runs a private Postfix instance whose resolver is the DNS fixture;
- :mod:`.world` ties these together into invented test domains.
"""
