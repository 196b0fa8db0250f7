"""The sans-IO HTTP/1.1 core: bytes to requests, and requests plus file metadata to plans.

Nothing in this package imports trio or socket, or opens a file; a test enforces it.
"""

from __future__ import annotations

from zerocopy.http.dates import DateCache, format_http_date, parse_http_date
from zerocopy.http.errors import HTTPError
from zerocopy.http.headers import HeaderRule, ResponseHeaders, field_value, parse_header_rule
from zerocopy.http.limits import Limits
from zerocopy.http.listing import (
    ListingQuery,
    choose_format,
    content_disposition,
    parse_listing_query,
)
from zerocopy.http.methods import ALLOW, check_method
from zerocopy.http.negotiate import CODING_SUFFIXES, choose_coding, parse_accept_encoding
from zerocopy.http.parser import CLOSED, NEED_DATA, Request, RequestParser
from zerocopy.http.ranges import ByteRange, plan_ranges
from zerocopy.http.response import (
    LAST_CHUNK,
    Representation,
    ResponsePlan,
    frame_chunk,
    head_200,
    plan_archive,
    plan_content,
    plan_error,
    plan_file,
    plan_listing,
    plan_page,
    plan_redirect,
    plan_status,
    representation_fields,
)
from zerocopy.http.target import Target, parse_target, redirect_location

__all__ = [
    "ALLOW",
    "CLOSED",
    "CODING_SUFFIXES",
    "LAST_CHUNK",
    "NEED_DATA",
    "ByteRange",
    "DateCache",
    "HTTPError",
    "HeaderRule",
    "Limits",
    "ListingQuery",
    "Representation",
    "Request",
    "RequestParser",
    "ResponseHeaders",
    "ResponsePlan",
    "Target",
    "check_method",
    "choose_coding",
    "choose_format",
    "content_disposition",
    "field_value",
    "format_http_date",
    "frame_chunk",
    "head_200",
    "parse_accept_encoding",
    "parse_header_rule",
    "parse_http_date",
    "parse_listing_query",
    "parse_target",
    "plan_archive",
    "plan_content",
    "plan_error",
    "plan_file",
    "plan_listing",
    "plan_page",
    "plan_ranges",
    "plan_redirect",
    "plan_status",
    "redirect_location",
    "representation_fields",
]
