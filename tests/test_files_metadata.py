"""Entity-tags from real stat results, and the Content-Type table."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest

from zerocopy.files import content_type, etag

# RFC 9110 §8.8.3: entity-tag = [ weak ] opaque-tag; opaque-tag = DQUOTE *etagc DQUOTE, where
# etagc = %x21 / %x23-7E / obs-text. A strong tag has no "W/".
_STRONG_ETAG = re.compile(rb'"[\x21\x23-\x7e\x80-\xff]*"')

MTIME_NS = 1_700_000_000_123_456_789


def make(path: Path, data: bytes, mtime_ns: int = MTIME_NS) -> os.stat_result:
    path.write_bytes(data)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return os.stat(path)


def test_etag_is_a_quoted_strong_tag(tmp_path: Path) -> None:
    tag = etag(make(tmp_path / "f", b"hello"))
    assert _STRONG_ETAG.fullmatch(tag), tag
    assert not tag.startswith(b"W/")


def test_etag_is_stable_for_the_same_file(tmp_path: Path) -> None:
    info = make(tmp_path / "f", b"hello")
    assert etag(info) == etag(os.stat(tmp_path / "f"))


def test_etag_changes_with_mtime_by_one_nanosecond(tmp_path: Path) -> None:
    before = make(tmp_path / "f", b"hello")
    after = make(tmp_path / "f", b"hello", MTIME_NS + 1)
    assert (before.st_ino, before.st_size) == (after.st_ino, after.st_size)
    if after.st_mtime_ns == before.st_mtime_ns:
        pytest.skip("this file system does not keep nanosecond timestamps")
    assert etag(before) != etag(after)


def test_etag_changes_with_size(tmp_path: Path) -> None:
    before = make(tmp_path / "f", b"hello")
    after = make(tmp_path / "f", b"hello!")
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)
    assert etag(before) != etag(after)


def test_etag_holds_no_inode_and_is_the_same_for_every_copy(tmp_path: Path) -> None:
    # Same size and modification time: the same tag, whatever the inode or the device. That
    # is a copy served by another worker, another machine (cp -a, rsync -a), or a restart.
    original = make(tmp_path / "f", b"hello")
    copies = [make(tmp_path / "copy", b"hello")]
    if os.path.isdir("/dev/shm"):
        with tempfile.TemporaryDirectory(dir="/dev/shm") as directory:
            copies.append(make(Path(directory) / "f", b"hello"))
    for copy in copies:
        assert copy.st_ino != original.st_ino
        assert copy.st_mtime_ns == original.st_mtime_ns
        assert etag(copy) == etag(original)


def test_etag_is_unchanged_by_metadata_that_leaves_the_content(tmp_path: Path) -> None:
    before = make(tmp_path / "f", b"hello")
    os.chmod(tmp_path / "f", 0o600)  # a new ctime, the same bytes
    after = os.stat(tmp_path / "f")
    assert etag(before) == etag(after)


def test_etag_is_mtime_and_size_in_hex(tmp_path: Path) -> None:
    # nginx's format, with the mtime in nanoseconds: what the README documents.
    info = make(tmp_path / "f", b"hello")
    assert etag(info) == b'"%x-5"' % MTIME_NS


@pytest.mark.parametrize("mtime_ns", [0, -1_500_000_000, 2**62])
def test_etag_for_odd_timestamps_is_still_a_strong_tag(tmp_path: Path, mtime_ns: int) -> None:
    info = make(tmp_path / "f", b"x", mtime_ns)
    assert _STRONG_ETAG.fullmatch(etag(info))


UTF8 = b"; charset=utf-8"

CONTENT_TYPES = [
    # Text gets a charset.
    ("index.html", b"text/html" + UTF8),
    ("page.htm", b"text/html" + UTF8),
    ("notes.txt", b"text/plain" + UTF8),
    ("style.css", b"text/css" + UTF8),
    ("data.csv", b"text/csv" + UTF8),
    ("data.json", b"application/json" + UTF8),
    ("image.svg", b"image/svg+xml" + UTF8),
    # Binary types do not.
    ("image.png", b"image/png"),
    ("photo.jpg", b"image/jpeg"),
    ("doc.pdf", b"application/pdf"),
    ("module.wasm", b"application/wasm"),
    # A compressed file is what it is, never x-tar with a Content-Encoding.
    ("archive.tar.gz", b"application/gzip"),
    ("archive.tgz", b"application/gzip"),
    ("file.gz", b"application/gzip"),
    ("archive.tar.bz2", b"application/x-bzip2"),
    ("archive.tar.xz", b"application/x-xz"),
    ("archive.tar.Z", b"application/x-compress"),
    ("page.html.br", b"application/x-brotli"),
    # Unknown, none, or only a dot.
    ("blob.unknownext", b"application/octet-stream"),
    ("README", b"application/octet-stream"),
    (".bashrc", b"application/octet-stream"),
    ("trailing.", b"application/octet-stream"),
    ("", b"application/octet-stream"),
    # The suffix is what counts, in any case.
    ("INDEX.HTML", b"text/html" + UTF8),
    ("Notes.TxT", b"text/plain" + UTF8),
    ("IMAGE.PNG", b"image/png"),
    ("ARCHIVE.TAR.GZ", b"application/gzip"),
    ("ARCHIVE.TGZ", b"application/gzip"),
    ("ARCHIVE.TAR.BZ2", b"application/x-bzip2"),
    ("dir.d/file", b"application/octet-stream"),
    ("a.txt.unknownext", b"application/octet-stream"),
]


@pytest.mark.parametrize(("name", "expected"), CONTENT_TYPES)
def test_content_type(name: str, expected: bytes) -> None:
    assert content_type(name) == expected


@pytest.mark.parametrize("name", ["app.js", "app.mjs", "APP.JS"])
def test_javascript_gets_a_charset(name: str) -> None:
    # text/javascript (RFC 9239) or the older application/javascript, depending on the
    # platform's mime.types; either way, UTF-8.
    assert content_type(name) in {
        b"text/javascript" + UTF8,
        b"application/javascript" + UTF8,
    }
