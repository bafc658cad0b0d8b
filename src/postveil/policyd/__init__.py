"""postveil-policyd: TLS policy for Postfix from MTA-STS, DANE and STARTTLS monitoring."""
