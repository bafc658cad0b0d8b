"""The ``portal`` section. Its keys arrive with the feature that reads them."""

from __future__ import annotations

from postveil.config.types import Section


class PortalSection(Section):
    pass
