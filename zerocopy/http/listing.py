"""What a request asks of a directory: the listing's format and order, or its archive.

Sans-IO: the query string and the ``Accept`` field in, small values out.

* The query (:func:`parse_listing_query`): ``format=json|html``, ``sort=name|size|mtime``,
  ``order=asc|desc``, ``download=tar``. Anything else, an unknown value, or a malformed
  member is ignored, so a listing with a garbage query is the default listing (as nginx's
  autoindex ignores queries). The first valid value of a name wins. At most
  :data:`MAX_QUERY_MEMBERS` members are looked at.
* The format (:func:`choose_format`): ``?format=`` decides when it is given; otherwise the
  ``Accept`` field is negotiated between ``text/html`` and ``application/json`` as RFC 9110
  §12.5.1 says: each of the two takes the weight of the most specific media range that matches
  it (``application/json`` over ``application/*`` over ``*/*``), and JSON is chosen only when
  its weight is strictly higher. So a browser (``text/html,...,*/*;q=0.8``), curl (``*/*``) and
  a request without the field get HTML, and ``Accept: application/json`` gets JSON. Nothing
  acceptable (``Accept: image/png``) also gets HTML rather than 406, as for content codings
  (``negotiate.py``). Media-type parameters other than ``q`` are ignored, and malformed members
  (a bad weight, a range that is not ``type/subtype``) are skipped one by one; at most
  :data:`MAX_ACCEPT_MEMBERS` are read, so a header of thousands of ranges costs a bounded
  amount of work (the head-size limit bounds its bytes already).
* The archive's name (:func:`content_disposition`): RFC 6266 with an RFC 8187 ``filename*``
  for the real name, and a plain ``filename`` fallback for clients that do not read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, final
from urllib.parse import quote, unquote

from zerocopy.http.negotiate import TOKEN, q_weight

__all__ = [
    "MAX_ACCEPT_MEMBERS",
    "MAX_QUERY_MEMBERS",
    "ListingQuery",
    "choose_format",
    "content_disposition",
    "parse_listing_query",
]

MAX_QUERY_MEMBERS: Final = 16
"""Query members looked at; the listing's own links carry at most two."""
MAX_ACCEPT_MEMBERS: Final = 64
"""Media ranges of one Accept read; browsers send fewer than ten."""

Format = Literal["html", "json"]
SortKey = Literal["name", "size", "mtime"]

_FORMATS: Final[dict[str, Format]] = {"html": "html", "json": "json"}
_SORTS: Final[dict[str, SortKey]] = {"name": "name", "size": "size", "mtime": "mtime"}
_ORDERS: Final = {"asc": False, "desc": True}
# The ranges that match each format, from the most specific: (type, subtype) -> specificity.
_MATCHES: Final[dict[Format, dict[tuple[str, str], int]]] = {
    "html": {("text", "html"): 3, ("text", "*"): 2, ("*", "*"): 1},
    "json": {("application", "json"): 3, ("application", "*"): 2, ("*", "*"): 1},
}
# RFC 8187 attr-char: what a filename* value carries unescaped.
_ATTR_CHARS: Final = "!#$&+-.^_`|~"


@final
@dataclass(frozen=True, slots=True)
class ListingQuery:
    """What the query string asks of a directory.

    Attributes:
        format: ``html`` or ``json``; ``None``: not asked, negotiate with ``Accept``.
        sort: The column to sort by (directories always come first).
        descending: Sort in descending order.
        download: ``?download=tar``: the directory as a tar archive.
    """

    format: Format | None = None
    sort: SortKey = "name"
    descending: bool = False
    download: bool = False


DEFAULT_QUERY: Final = ListingQuery()


def parse_listing_query(query: bytes) -> ListingQuery:
    """Read the members of a directory's query string that this server knows.

    Args:
        query: The raw query, without the ``?`` (``Target.query``).

    Returns:
        The request's choices; defaults for everything absent, unknown or malformed.
    """
    if not query:
        return DEFAULT_QUERY
    found: dict[str, str] = {}
    for member in query.split(b"&", MAX_QUERY_MEMBERS)[:MAX_QUERY_MEMBERS]:
        name, _, value = member.partition(b"=")
        key = unquote(name.decode("latin-1"), errors="replace")
        if key in found:
            continue
        text = unquote(value.decode("latin-1"), errors="replace")
        if (
            (key == "format" and text in _FORMATS)
            or (key == "sort" and text in _SORTS)
            or (key == "order" and text in _ORDERS)
            or (key == "download" and text == "tar")
        ):
            found[key] = text
    if not found:
        return DEFAULT_QUERY
    return ListingQuery(
        format=_FORMATS.get(found.get("format", "")),
        sort=_SORTS[found.get("sort", "name")],
        descending=_ORDERS[found.get("order", "asc")],
        download="download" in found,
    )


def _weights(accept: str) -> dict[Format, float]:
    """The weight of HTML and of JSON under an Accept value (0 when nothing matches)."""
    best: dict[Format, tuple[int, float]] = {"html": (0, 0.0), "json": (0, 0.0)}
    for member in accept.split(",", MAX_ACCEPT_MEMBERS)[:MAX_ACCEPT_MEMBERS]:
        media, *parameters = member.split(";")
        kind, slash, subtype = media.strip(" \t").partition("/")
        if not (slash and TOKEN.fullmatch(kind) and TOKEN.fullmatch(subtype)):
            continue
        if kind == "*" and subtype != "*":
            continue  # "*/json" is no media range.
        weight = q_weight(parameters, first=True)  # after q: accept-ext (RFC 9110 §12.5.1)
        if weight < 0:
            continue
        for form, ranges in _MATCHES.items():
            specificity = ranges.get((kind, subtype), 0)
            if specificity > best[form][0]:
                best[form] = (specificity, weight)
    return {form: weight for form, (_, weight) in best.items()}


def choose_format(query: ListingQuery, accept: bytes | None) -> Format:
    """The listing's format: ``?format=`` if given, else JSON only when ``Accept`` weighs it
    strictly above HTML (see the module docstring)."""
    if query.format is not None:
        return query.format
    if not accept:
        return "html"
    weights = _weights(accept.decode("latin-1").lower())
    return "json" if weights["json"] > weights["html"] else "html"


def content_disposition(name: str) -> bytes:
    """The ``Content-Disposition`` field value of a download named ``name`` (RFC 6266).

    ``filename*`` (RFC 8187) carries the name itself, UTF-8 and percent-encoded; ``filename``
    carries an ASCII fallback for clients that do not read ``filename*``, in which anything
    but printable ASCII, and ``"``, ``\\`` and ``%`` (which some clients decode), becomes
    ``_``.
    """
    fallback = "".join(char if " " <= char <= "~" and char not in '"\\%' else "_" for char in name)
    encoded = quote(name, safe=_ATTR_CHARS, errors="strict")
    return b"attachment; filename=\"%s\"; filename*=UTF-8''%s" % (
        fallback.encode("ascii"),
        encoded.encode("ascii"),
    )
