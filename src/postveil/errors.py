"""Exception hierarchy shared by every postveil component.

Adapters raise these; only protocol boundaries (milter callbacks, socketmap and
policy handlers, CLI entry points) catch and log them.
"""


class PostveilError(Exception):
    """Root of every error postveil raises on purpose."""


class ConfigError(PostveilError):
    """The configuration file is missing, unreadable or invalid.

    ``problems`` lists one human-readable line per error, each naming the YAML
    path, the line and what was expected.
    """

    def __init__(self, path: str, problems: list[str], unreadable: bool = False) -> None:
        self.path = path
        self.problems = problems
        # The file could not be read at all (missing, a directory, no permission).
        self.unreadable = unreadable
        summary = f"{len(problems)} error(s) in {path}"
        super().__init__(summary + "".join(f"\n  {p}" for p in problems))


class TemporaryFailure(PostveilError):
    """A check could not finish (timeout, DNS SERVFAIL, I/O error); the mail must be retried."""
