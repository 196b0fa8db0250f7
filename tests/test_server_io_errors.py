"""A read error in the middle of a body: not EAGAIN, not a client that left, not a truncation.

The file lies on a device that really fails: an ext4 image on a loop device whose backing file
is cut short after mounting, at the middle of the file's blocks. Reads before the cut succeed;
a read of a block past it fails with EIO, in the kernel, whichever syscall asks (``sendfile``,
``splice``, ``preadv``, in a worker thread or on the event loop). The file is read cold (the
file system was mounted after it was written), so the zero-copy strategies offload their
chunks to worker threads and meet the error there.

What must hold: the 200 head and the file's bytes up to somewhere before the cut, never a byte
that is not the file's, then a close; a warning that names the I/O error (not "client went
away", not "truncated"); nothing leaked; the server goes on serving.

Needs root, ``losetup``, ``mount`` and ``mkfs.ext4`` (e2fsprogs); skipped with the reason
otherwise.
"""

from __future__ import annotations

import array
import fcntl
import logging
import os
import shutil
import struct
import subprocess
from typing import TYPE_CHECKING

import pytest

from tests.conftest import start_server, stop_server
from tests.helpers import RawClient, open_fd_count

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    import trio

MiB = 1 << 20
SIZE = 8 * MiB
CUT_AT = 3 * MiB  # the file's offset whose block the backing file is cut at
_FS_IOC_FIEMAP = 0xC020660B
_FIEMAP_HEAD = struct.Struct("=QQLLLL")
_FIEMAP_EXTENT = struct.Struct("=QQQQQLLLL")


def _run(*command: str) -> str:
    return subprocess.run(
        command, check=True, capture_output=True, text=True, timeout=60
    ).stdout.strip()


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root (loop devices and mount)"
    for tool in ("losetup", "mount", "umount", "mkfs.ext4"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (e2fsprogs, mount)"
    if not os.path.exists("/dev/loop-control"):
        return "no /dev/loop-control: loop devices unavailable"
    return None


def physical_offset(path: Path, offset: int) -> int:
    """Where byte ``offset`` of the file lies on its device (the FIEMAP ioctl)."""
    count = 32
    request = bytearray(_FIEMAP_HEAD.size + count * _FIEMAP_EXTENT.size)
    _FIEMAP_HEAD.pack_into(request, 0, 0, 1 << 62, 1, 0, count, 0)  # FIEMAP_FLAG_SYNC
    buffer = array.array("B", request)
    with path.open("rb") as file:
        fcntl.ioctl(file.fileno(), _FS_IOC_FIEMAP, buffer)
    data = buffer.tobytes()
    mapped = _FIEMAP_HEAD.unpack_from(data, 0)[3]
    for index in range(mapped):
        logical, physical, length, *_ = _FIEMAP_EXTENT.unpack_from(
            data, _FIEMAP_HEAD.size + index * _FIEMAP_EXTENT.size
        )
        if logical <= offset < logical + length:
            return int(physical + offset - logical)
    raise AssertionError(f"offset {offset} of {path} is not mapped")


@pytest.fixture
def failing_device(tmp_path: Path) -> Iterator[tuple[Path, bytes]]:
    """A mounted file system whose ``big.bin`` fails to read from :data:`CUT_AT` on; yields
    the mount point and the file's bytes."""
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    image = tmp_path / "fs.img"
    mount_point = tmp_path / "mnt"
    mount_point.mkdir()
    with image.open("wb") as file:
        file.truncate(32 * MiB)
    _run("mkfs.ext4", "-q", "-F", str(image))
    try:
        loop = _run("losetup", "--find", "--show", str(image))
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"losetup failed: {exc.stderr.strip()}")
    mounted = False
    try:
        try:
            _run("mount", loop, str(mount_point))
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"mount failed: {exc.stderr.strip()}")
        data = os.urandom(SIZE)
        (mount_point / "big.bin").write_bytes(data)
        (mount_point / "small.txt").write_text("still here\n")
        _run("sync")
        cut = physical_offset(mount_point / "big.bin", CUT_AT)
        small = physical_offset(mount_point / "small.txt", 0)
        assert small < cut, "small.txt lies past the cut; the layout is not what ext4 makes"
        _run("umount", str(mount_point))
        # Mounted again: nothing of the file is in the page cache, so every read goes to the
        # device, and the device's backing file now ends at the cut.
        _run("mount", "-o", "ro", loop, str(mount_point))
        mounted = True
        os.truncate(image, cut)
        yield mount_point, data
    finally:
        if mounted:
            subprocess.run(["umount", str(mount_point)], check=False, timeout=60)
        subprocess.run(["losetup", "-d", loop], check=False, timeout=60)


async def test_an_io_error_mid_body_closes_after_the_files_bytes(
    nursery: trio.Nursery,
    failing_device: tuple[Path, bytes],
    strategy: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    root, data = failing_device
    caplog.set_level(logging.DEBUG, logger="zerocopy")
    before = open_fd_count()
    server = await start_server(nursery, root=str(root), strategy=strategy, send_timeout=30.0)
    try:
        client = await RawClient.connect(server.port)
        try:
            await client.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
            head = await client._read_until(b"\r\n\r\n")
            body = await client.read_to_eof()
        finally:
            await client.aclose()
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Content-Length: %d\r\n" % SIZE in head
        assert len(body) <= CUT_AT  # closed at or before the failing block
        assert body == data[: len(body)]  # every byte sent is the file's; nothing padded

        messages = [r.getMessage() for r in caplog.records if r.name.startswith("zerocopy")]
        failures = [m for m in messages if "transfer failed" in m]
        assert len(failures) == 1, messages
        assert "Input/output error" in failures[0]
        assert not any("went away" in m or "truncated" in m for m in messages)
        assert not any(r.exc_info for r in caplog.records)

        # The server is fine: another file on the same device, and the broken file's head.
        client = await RawClient.connect(server.port)
        try:
            assert (await client.request("/small.txt")).body == b"still here\n"
            assert (await client.request("/big.bin", "HEAD")).status == 200
        finally:
            await client.aclose()
        transfer = server.statistics().transfer
        assert transfer.body_bytes >= len(body)
        assert transfer.offloaded >= 1  # cold: the failing read ran in a worker thread
    finally:
        await stop_server(server)
    assert open_fd_count() <= before, "file descriptors leaked"
