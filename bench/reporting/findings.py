"""What investigations found, as the report states it: prose with the evidence measured.

Kept apart from the sections so that a finding is written once, with the commands and the
figures that support it, and shown in every report beside the run's own figures.
"""

from __future__ import annotations

from typing import Final

__all__ = ["SPLICE_FINDING"]

SPLICE_FINDING: Final = ("**Why splice costs more CPU per GiB than sendfile.** (to be written)",)
