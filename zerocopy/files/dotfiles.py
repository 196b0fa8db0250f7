"""Dot files: which names ``--dotfiles deny`` (the default) hides.

A name that starts with a dot (``.git``, ``.env``) is hidden: a request through it gets 404,
listings leave it out, and tar archives skip it. ``.well-known`` directly under the root is
the exception (RFC 8615: ACME challenges and ``security.txt`` live there). Requests, listings
and archives all ask these two functions, so they cannot disagree.
"""

from __future__ import annotations

__all__ = ["hidden_name", "hidden_path"]


def hidden_name(name: str, *, top: bool) -> bool:
    """Whether ``name`` is hidden; ``top``: it is directly under the root."""
    return name.startswith(".") and not (top and name == ".well-known")


def hidden_path(segments: tuple[str, ...]) -> bool:
    """Whether a path (its decoded segments, from the root) goes through a hidden name."""
    return any(hidden_name(segment, top=index == 0) for index, segment in enumerate(segments))
