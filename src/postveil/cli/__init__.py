"""The ``postveil`` admin command."""
