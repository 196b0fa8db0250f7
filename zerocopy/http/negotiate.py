"""Content-coding negotiation: which precompressed sidecar, if any, answers a request.

RFC 9110 §12.5.3 (Accept-Encoding), as nginx's ``gzip_static`` and Caddy's ``precompressed``
apply it to files compressed at deploy time:

* Each member is a coding with an optional weight, ``q`` from 0 to 1 with at most three
  decimals; ``q=0`` refuses that coding. ``*`` stands for every coding not named. Codings are
  case-insensitive; ``x-gzip`` is ``gzip``.
* Of the sidecars that exist and are acceptable, the one with the highest weight wins; equal
  weights go to the server's order of preference (``--precompressed``, ``br,zstd,gzip`` by
  default).
* No header, an empty header, or no acceptable sidecar: the original, without a coding. That
  holds even for ``identity;q=0``: the RFC lets a server disregard the field rather than send
  406, and nginx does the same, because a 406 breaks clients that send such headers by
  mistake.
* Malformed members (a bad weight, an empty coding) are ignored, one by one; at most
  :data:`MAX_MEMBERS` members are read, so a header of thousands of codings costs a bounded
  amount of work (the head-size limit bounds the bytes already).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "CODING_SUFFIXES",
    "MAX_MEMBERS",
    "TOKEN",
    "choose_coding",
    "parse_accept_encoding",
    "q_weight",
]

CODING_SUFFIXES: Final = {"br": ".br", "zstd": ".zst", "gzip": ".gz"}
"""The codings served from sidecars, and the sidecar's suffix for each (as nginx and Caddy)."""
MAX_MEMBERS: Final = 64
"""Members of one Accept-Encoding read; real clients send fewer than ten."""
TOKEN: Final = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")
"""A token (RFC 9110 §5.6.2), in lower case: header values are lowered before parsing."""
_QVALUE: Final = re.compile(r"(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)")
_ALIASES: Final = {"x-gzip": "gzip"}


def q_weight(parameters: Sequence[str], *, first: bool) -> float:
    """The weight a member's ``q`` parameter gives (RFC 9110 §12.4.2): 1.0 without one, -1.0
    for a malformed one (the member is then skipped). With ``first``, the first ``q`` decides
    and later parameters are not read (Accept: they are accept-ext); else the last does."""
    weight = 1.0
    for parameter in parameters:
        name, _, text = parameter.strip(" \t").partition("=")
        if name.strip(" \t") != "q":
            continue
        text = text.strip(" \t")
        if not _QVALUE.fullmatch(text):
            return -1.0
        weight = float(text)
        if first:
            break
    return weight


def parse_accept_encoding(value: bytes) -> dict[str, float]:
    """The weight of each coding an Accept-Encoding value names (``*`` included).

    A coding named twice keeps its first weight. Malformed members are skipped.
    """
    weights: dict[str, float] = {}
    for member in value.decode("latin-1").lower().split(",")[:MAX_MEMBERS]:
        coding, *parameters = member.split(";")
        coding = coding.strip(" \t")
        if not TOKEN.fullmatch(coding):
            continue
        weight = q_weight(parameters, first=False)
        if weight < 0:
            continue
        weights.setdefault(_ALIASES.get(coding, coding), weight)
    return weights


def choose_coding(accept: bytes | None, available: Sequence[str]) -> str | None:
    """The coding to answer with, or ``None`` for the original.

    Args:
        accept: The request's Accept-Encoding value, if it sent one.
        available: Codings of the sidecars that exist, in the server's order of preference.
    """
    if not accept or not available:
        return None
    weights = parse_accept_encoding(accept)
    anything = weights.get("*", 0.0)
    best: str | None = None
    best_weight = 0.0
    for coding in available:
        weight = weights.get(coding, anything)
        if weight > best_weight:
            best, best_weight = coding, weight
    return best
