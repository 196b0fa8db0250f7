"""What a request asks of a directory: the query, the Accept negotiation, the download's name.

Table-driven, as h11's ``test_io.py``; the RFC 6266 value is read back with the stdlib's
``email`` parser (an independent peer that implements RFC 2231/8187 parameters).
"""

from __future__ import annotations

import time
from email.message import EmailMessage

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zerocopy.http import (
    ListingQuery,
    Request,
    RequestParser,
    choose_format,
    content_disposition,
    parse_listing_query,
)
from zerocopy.http.listing import MAX_ACCEPT_MEMBERS, MAX_QUERY_MEMBERS

QUERY_CASES = [
    (b"", ListingQuery()),
    (b"format=json", ListingQuery(format="json")),
    (b"format=html", ListingQuery(format="html")),
    (b"sort=size&order=desc", ListingQuery(sort="size", descending=True)),
    (b"order=desc&sort=mtime", ListingQuery(sort="mtime", descending=True)),
    (b"download=tar", ListingQuery(download=True)),
    (b"download=tar&format=json", ListingQuery(format="json", download=True)),
    (b"%73ort=%73ize", ListingQuery(sort="size")),  # percent-encoded names and values
    # The first valid value of a name wins; invalid ones are skipped, not fatal.
    (b"sort=size&sort=mtime", ListingQuery(sort="size")),
    (b"sort=bogus&sort=mtime", ListingQuery(sort="mtime")),
    # Garbage: ignored, the default listing.
    (b"sort=", ListingQuery()),
    (b"sort=SIZE", ListingQuery()),
    (b"sort=size;order=desc", ListingQuery()),
    (b"order=up", ListingQuery()),
    (b"format=xml", ListingQuery()),
    (b"download=zip", ListingQuery()),
    (b"download", ListingQuery()),
    (b"&&&=&=", ListingQuery()),
    (b"sort=%zz&order=%", ListingQuery()),
    (b"sort=%ff%fe", ListingQuery()),
    (b"\xff\xfe=\x00", ListingQuery()),
    (b"next=//evil.example&sort=name", ListingQuery()),
]


@pytest.mark.parametrize(("query", "expected"), QUERY_CASES)
def test_query(query: bytes, expected: ListingQuery) -> None:
    assert parse_listing_query(query) == expected


def test_only_the_first_members_are_read() -> None:
    filler = b"&".join([b"x=1"] * MAX_QUERY_MEMBERS)
    assert parse_listing_query(filler + b"&sort=size") == ListingQuery()
    assert parse_listing_query(b"sort=size&" + filler).sort == "size"


def test_a_huge_query_costs_little() -> None:
    query = b"&".join([b"sort=bogus"] * 100_000)
    started = time.perf_counter()
    assert parse_listing_query(query) == ListingQuery()
    # Generous: the bound is what counts (16 members of 100,000), not the machine's speed.
    assert time.perf_counter() - started < 0.5


@given(st.binary(max_size=300))
def test_any_query_parses(query: bytes) -> None:
    result = parse_listing_query(query)
    assert result.sort in ("name", "size", "mtime")


BROWSER = b"text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"
ACCEPT_CASES = [
    (None, "html"),
    (b"", "html"),
    (BROWSER, "html"),
    (b"*/*", "html"),  # curl: a tie goes to HTML
    (b"application/json", "json"),
    (b"application/json, text/html;q=0.9", "json"),
    (b"text/html;q=0.9, application/json", "json"),
    (b"text/html, application/json", "html"),  # tie
    (b"application/json;q=0.5, text/html;q=0.5", "html"),
    (b"application/json;q=0.5, */*;q=0.1", "json"),
    (b"application/*", "json"),
    (b"application/*;q=0.8, text/*;q=0.7", "json"),
    (b"text/*, application/json;q=0.999", "html"),
    (b"APPLICATION/JSON", "json"),  # case-insensitive
    (b"application/json; charset=utf-8", "json"),  # other parameters are ignored
    (b"application/json;charset=utf-8;q=0.2, text/html;q=0.1", "json"),
    # The most specific range decides a type's weight, wherever it stands.
    (b"*/*;q=0.9, text/html;q=0.1", "json"),
    (b"application/json;q=0.1, application/*;q=1", "json"),  # 0.1 over HTML's nothing
    (b"application/json;q=0.1, application/*;q=1, text/html;q=0.2", "html"),
    (b"application/json;q=0", "html"),  # refused
    (b"application/json;q=0, */*", "html"),
    (b"text/html;q=0, application/json;q=0.001", "json"),
    (b"image/png", "html"),  # nothing acceptable: HTML, not 406
    # Malformed members are skipped one by one.
    (b"application/json;q=2", "html"),
    (b"application/json;q=0.5000", "html"),
    (b"application/json;q=abc, text/html;q=0.1", "html"),
    (b"application/json;q=-1", "html"),
    (b"application json", "html"),
    (b"*/json", "html"),
    (b"/json", "html"),
    (b"application/", "html"),
    (b";;;,,,application/json", "json"),
    (b"application/json;q=0.5;q=0.1, text/html;q=0.4", "json"),  # parameters after q
    (b"\xff\xfe/\x00, application/json", "json"),
]


@pytest.mark.parametrize(("accept", "expected"), ACCEPT_CASES)
def test_accept(accept: bytes | None, expected: str) -> None:
    assert choose_format(ListingQuery(), accept) == expected


@pytest.mark.parametrize("form", ["html", "json"])
@pytest.mark.parametrize("accept", [None, b"application/json", b"text/html"])
def test_the_query_overrides_accept(form: str, accept: bytes | None) -> None:
    query = parse_listing_query(b"format=" + form.encode())
    assert choose_format(query, accept) == form


def test_only_the_first_ranges_are_read() -> None:
    filler = b", ".join([b"image/png"] * MAX_ACCEPT_MEMBERS)
    assert choose_format(ListingQuery(), filler + b", application/json") == "html"
    assert choose_format(ListingQuery(), b"application/json, " + filler) == "json"


def test_a_huge_accept_costs_little() -> None:
    accept = b",".join([b"application/json;q=0.5;x=" + b"y" * 50] * 20_000)
    started = time.perf_counter()
    assert choose_format(ListingQuery(), accept) == "json"
    assert time.perf_counter() - started < 0.5


@given(st.binary(max_size=400))
def test_any_accept_chooses_a_format(accept: bytes) -> None:
    assert choose_format(ListingQuery(), accept) in ("html", "json")


def _read_back(value: bytes) -> tuple[str, str]:
    """The ``filename`` and the ``filename*`` of a value, each read alone (the email parser
    prefers the first when both are present, where RFC 6266 prefers the second)."""
    names = []
    for part in value.decode("ascii").split("; ")[1:]:
        message = EmailMessage()
        message["Content-Disposition"] = "attachment; " + part
        name = message.get_filename()
        assert name is not None
        names.append(name)
    fallback, name = names
    return fallback, name


DISPOSITION_CASES = [
    ("www.tar", b"attachment; filename=\"www.tar\"; filename*=UTF-8''www.tar"),
    ("a b.tar", b"attachment; filename=\"a b.tar\"; filename*=UTF-8''a%20b.tar"),
    (
        "ünï.tar",
        b"attachment; filename=\"_n_.tar\"; filename*=UTF-8''%C3%BCn%C3%AF.tar",
    ),
    (
        'q"uo\\te%41.tar',
        b"attachment; filename=\"q_uo_te_41.tar\"; filename*=UTF-8''q%22uo%5Cte%2541.tar",
    ),
    ("cr\r\nlf.tar", b"attachment; filename=\"cr__lf.tar\"; filename*=UTF-8''cr%0D%0Alf.tar"),
    ("日本.tar", b"attachment; filename=\"__.tar\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC.tar"),
]


@pytest.mark.parametrize(("name", "expected"), DISPOSITION_CASES)
def test_content_disposition(name: str, expected: bytes) -> None:
    value = content_disposition(name)
    assert value == expected
    assert value.isascii()
    assert b"\r" not in value
    assert b"\n" not in value


@pytest.mark.parametrize("name", ["www.tar", "a b.tar", "ünï.tar", "日本.tar", "x;y=z.tar"])
def test_content_disposition_reads_back(name: str) -> None:
    fallback, real = _read_back(content_disposition(name))
    assert real == name
    assert len(fallback) == len(name)
    assert fallback.isascii()


@given(st.text(st.characters(codec="utf-8"), min_size=1, max_size=40))
def test_any_name_is_a_safe_field_value(name: str) -> None:
    value = content_disposition(name)
    assert value.isascii()
    assert all(0x20 <= byte < 0x7F for byte in value)


def test_the_parser_keeps_accept_and_the_request_stays_plain() -> None:
    # Accept only chooses a listing's format: a request with it may still take the fast path
    # (which serves cached files, never directories).
    parser = RequestParser()
    parser.receive_data(
        b"GET /f HTTP/1.1\r\nHost: h\r\nAccept: application/json\r\nAccept-Encoding: br\r\n"
        b"Accept: text/html;q=0.5\r\n\r\n"
    )
    request = parser.next_event()
    assert isinstance(request, Request)
    assert request.headers[b"accept"] == b"application/json, text/html;q=0.5"  # joined
    assert request.plain is True
    parser.receive_data(b"GET /f HTTP/1.1\r\nHost: h\r\nAccept: */*\r\nRange: bytes=0-1\r\n\r\n")
    request = parser.next_event()
    assert isinstance(request, Request)
    assert request.plain is False  # a range: not plain, with or without Accept
    assert request.headers[b"accept"] == b"*/*"
