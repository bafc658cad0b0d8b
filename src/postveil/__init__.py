"""postveil: keeps regulated mail encrypted on its way out of Postfix."""

__version__ = "0.1.0"
