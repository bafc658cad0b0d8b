# Type information for the C module _wordscan.c.
from collections.abc import Sequence

class Automaton:
    def __init__(
        self, entries: Sequence[tuple[str, tuple[int, ...]]], group_names: Sequence[str]
    ) -> None: ...
    @property
    def states(self) -> int: ...
    def search(
        self, lowered: str, limit: int
    ) -> tuple[dict[str, list[tuple[int, int]]] | None, dict[str, list[int]] | None, int, bool]: ...
