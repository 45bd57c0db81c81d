"""Kept for the merged migrations (0001, 0003, 0008, 0010), which are pinned by hash and
name ``relais.models.UTCDateTime``. New code imports ``sync.store.models``."""

from sync.store.models import UTCDateTime

__all__ = ["UTCDateTime"]
