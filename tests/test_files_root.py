"""Root.open: containment, open and stat, and errno mapping, on a real file system.

Every case builds what it needs under ``tmp_path``: files, directories, symlinks in and out of
the root, a FIFO, a socket, a device node. The cases that need ``EACCES`` run in a subprocess
that drops root's privileges first, because root is never refused by mode bits.
"""

from __future__ import annotations

import errno
import os
import pwd
import resource
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from zerocopy.files import Opened, Refused, Root, refusal

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import FrameType

REPO = Path(__file__).resolve().parents[1]


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def segments(path: str) -> tuple[str, ...]:
    return tuple(path.split("/")) if path else ()


@contextmanager
def must_not_block(seconds: float = 5.0) -> Iterator[None]:
    """Fail, rather than hang, if the body blocks: a FIFO opened without O_NONBLOCK waits for a
    writer for ever. SIGALRM's handler raises, which interrupts the blocked ``open``."""

    def expire(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"blocked for {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except TimeoutError as exc:
        pytest.fail(f"Root.open blocked: {exc}")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def status(root: Root, path: str | tuple[str, ...]) -> int:
    """200 for a successful open (closed again at once), else the refusal's status hint."""
    try:
        with must_not_block():
            opened = root.open(segments(path) if isinstance(path, str) else path)
    except Refused as exc:
        return exc.status_hint
    opened.close()
    return 200


@dataclass
class Tree:
    root: Path
    outside: Path


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    """``root/`` to serve, and ``outside/`` next to it holding files of the same names.

    Outside targets exist, so a 404 for a link that leads there cannot come from ENOENT.
    """
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    for base in (root, outside):
        base.mkdir()
        (base / "a.txt").write_text(f"a in {base.name}\n")
        (base / "dir").mkdir()
        (base / "dir" / "b.txt").write_text(f"b in {base.name}\n")
    return Tree(root, outside)


# --- Opening what is there ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "is_dir"),
    [("a.txt", False), ("dir", True), ("dir/b.txt", False), ("", True)],
)
@pytest.mark.parametrize("follow", [False, True])
def test_opens_files_and_directories(tree: Tree, path: str, is_dir: bool, follow: bool) -> None:
    opened = Root(str(tree.root), follow_symlinks=follow).open(segments(path))
    try:
        assert isinstance(opened, Opened)
        assert opened.is_dir is is_dir
        expected = tree.root / path if path else tree.root
        assert opened.path == os.fsencode(expected)
        now = os.fstat(opened.fd)
        assert (opened.stat.st_dev, opened.stat.st_ino) == (now.st_dev, now.st_ino)
        assert opened.stat.st_mode == now.st_mode
        assert opened.stat.st_size == now.st_size
        assert os.get_blocking(opened.fd) is False  # Opened with O_NONBLOCK.
        if not is_dir:
            assert os.read(opened.fd, 100) == expected.read_bytes()
    finally:
        opened.close()


def test_stat_describes_the_opened_file_not_the_path(tree: Tree) -> None:
    root = Root(str(tree.root))
    opened = root.open(["a.txt"])
    try:
        before = opened.stat
        replacement = tree.root / "a.new"
        replacement.write_text("a different, longer file\n")
        os.replace(replacement, tree.root / "a.txt")
        now = os.stat(tree.root / "a.txt")
        assert now.st_ino != before.st_ino
        assert opened.stat.st_ino == os.fstat(opened.fd).st_ino == before.st_ino
        assert opened.stat.st_size == len("a in root\n")
    finally:
        opened.close()


@pytest.mark.parametrize(
    "name",
    [
        "sp ace.txt",
        "100%.txt",
        "%41%2F.txt",
        "a#b",
        "q?x=1&y=2",
        "ünïcödé.txt",
        "日本語.txt",
        "emoji-😀",
        "semi;colon,comma'quote\"",
        "<script>",
    ],
)
def test_names_with_special_characters(tree: Tree, name: str) -> None:
    (tree.root / "dir" / name).write_text(name)
    opened = Root(str(tree.root)).open(["dir", name])
    try:
        assert os.read(opened.fd, 1000) == name.encode("utf-8")
        assert opened.path == os.fsencode(tree.root / "dir" / name)
    finally:
        opened.close()


def test_caller_closes_and_nothing_leaks(tree: Tree) -> None:
    os.mkfifo(tree.root / "fifo")
    os.symlink("a.txt", tree.root / "link")
    os.symlink(tree.outside / "a.txt", tree.root / "out")
    roots = [Root(str(tree.root)), Root(str(tree.root), follow_symlinks=True)]
    paths = ["a.txt", "dir", "missing", "a.txt/x", "x" * 300, "fifo", "link", "out", "dir/../a.txt"]
    expected = {
        False: [200, 200, 404, 404, 404, 403, 403, 403, 404],
        True: [200, 200, 404, 404, 404, 403, 200, 404, 404],
    }
    before = fd_count()
    for _ in range(20):
        for root in roots:
            assert [status(root, path) for path in paths] == expected[root.follow_symlinks]
    assert fd_count() == before


# --- Refusals: 404 -----------------------------------------------------------------------

TOO_DEEP = tuple(["d" * 200] * 25)  # Over PATH_MAX (4096) in total, each segment legal.


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(("missing",), id="missing"),
        pytest.param(("dir", "missing"), id="missing-in-dir"),
        pytest.param(("missing", "x"), id="missing-dir"),
        pytest.param(("a.txt", "x"), id="file-as-directory"),  # ENOTDIR
        pytest.param(("x" * 300,), id="segment-over-NAME_MAX"),  # ENAMETOOLONG
        pytest.param(TOO_DEEP, id="path-over-PATH_MAX"),  # ENAMETOOLONG
    ],
)
@pytest.mark.parametrize("follow", [False, True])
def test_not_found(tree: Tree, path: tuple[str, ...], follow: bool) -> None:
    assert status(Root(str(tree.root), follow_symlinks=follow), path) == 404


@pytest.mark.parametrize(
    "path",
    [
        # Each of these names something that exists, if the segment were trusted.
        pytest.param(("dir", "..", "a.txt"), id="dotdot"),
        pytest.param(("..", "outside", "a.txt"), id="dotdot-out"),
        pytest.param((".", "a.txt"), id="dot"),
        pytest.param(("dir", "", "b.txt"), id="empty"),
        pytest.param(("dir/b.txt",), id="slash"),
        pytest.param(("../outside/a.txt",), id="slash-dotdot"),
        pytest.param(("a.txt\x00",), id="nul"),
        pytest.param(("bad\udcff",), id="lone-surrogate"),
    ],
)
@pytest.mark.parametrize("follow", [False, True])
def test_unsafe_segments_are_refused_before_any_lookup(
    tree: Tree, path: tuple[str, ...], follow: bool
) -> None:
    # The HTTP layer never sends these; this layer must not depend on that. A 403 here would
    # tell a prober that the path exists (aiohttp CVE-2025-69226).
    (tree.root / os.fsdecode(b"bad\xff")).write_text("not UTF-8")
    (tree.root.parent / "outside" / "a.txt").write_text("outside")
    root = Root(str(tree.root), follow_symlinks=follow)
    before = fd_count()
    assert status(root, path) == 404
    assert fd_count() == before
    root.close()


def make_deep(dir_fd: int, levels: int) -> int:
    """``levels`` nested 250-byte directories under ``dir_fd``; the innermost, opened."""
    fd = os.dup(dir_fd)
    for _ in range(levels):
        os.mkdir(DEEP_NAME, dir_fd=fd)
        inner = os.open(DEEP_NAME, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = inner
    return fd


DEEP_NAME = "d" * 250
DEEP_HOP = "/".join([DEEP_NAME] * 9)  # 2258 bytes: a legal symlink target.


def test_target_beyond_path_max_through_links(tree: Tree) -> None:
    # root/hop1 -> 9 levels, then hop2 -> 9 more: each link is legal, the real path of the file
    # is over 4 KiB, so the kernel cannot name it: readlink(/proc/self/fd/N) is ENAMETOOLONG
    # *after* the open succeeded. That must still be a 404, with the descriptor closed.
    root_fd = os.open(tree.root, os.O_RDONLY | os.O_DIRECTORY)
    middle = make_deep(root_fd, 9)
    inner = make_deep(middle, 9)
    try:
        os.symlink(DEEP_HOP, "hop1", dir_fd=root_fd)
        os.symlink(DEEP_HOP, "hop2", dir_fd=middle)
        os.close(os.open("f", os.O_WRONLY | os.O_CREAT, dir_fd=inner))
    finally:
        for fd in (root_fd, middle, inner):
            os.close(fd)
    root = Root(str(tree.root), follow_symlinks=True)
    before = fd_count()
    assert status(root, "hop1/hop2/f") == 404
    assert status(root, "hop1/hop2") == 404
    assert fd_count() == before
    assert status(root, "hop1") == 200  # The first hop alone is fine.


# --- Refusals: symlinks without follow_symlinks ------------------------------------------


@pytest.fixture
def links(tree: Tree) -> Tree:
    """Symlinks of every kind inside ``root``."""
    r, out = tree.root, tree.outside
    os.symlink("a.txt", r / "to_file")
    os.symlink("dir", r / "to_dir")
    os.symlink(out / "a.txt", r / "out_file")
    os.symlink(out / "dir", r / "out_dir")
    os.symlink("to_file", r / "chain")  # chain -> to_file -> a.txt
    os.symlink(out / "back_in", r / "chain_via_outside")
    os.symlink(r / "a.txt", out / "back_in")  # ... -> outside/back_in -> root/a.txt
    os.symlink("nowhere", r / "dangling")
    os.symlink("../" * 20 + "etc/passwd", r / "dir" / "etc_passwd")
    os.symlink("../../outside/a.txt", r / "dir" / "relative_out")
    os.symlink("loop_b", r / "loop_a")
    os.symlink("loop_a", r / "loop_b")
    os.mkfifo(out / "fifo")
    os.symlink(out / "fifo", r / "out_fifo")
    os.symlink("/dev/null", r / "out_devnull")
    return tree


@pytest.mark.parametrize(
    "path",
    [
        "to_file",  # Last component: O_NOFOLLOW, ELOOP.
        "to_dir",
        "to_dir/b.txt",  # Intermediate: the /proc/self/fd comparison.
        "out_file",
        "out_dir",
        "out_dir/b.txt",
        "chain",
        "chain_via_outside",
        "dangling",
        "dir/etc_passwd",
        "dir/relative_out",
        "loop_a",
        "out_fifo",
        "out_devnull",
    ],
)
def test_symlinks_refused_without_follow(links: Tree, path: str) -> None:
    assert status(Root(str(links.root)), path) == 403


# --- Symlinks with follow_symlinks -------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("to_file", "a.txt"),
        ("to_dir", "dir"),
        ("to_dir/b.txt", "dir/b.txt"),
        ("chain", "a.txt"),
        ("chain_via_outside", "a.txt"),  # Leaves the root on the way, but ends inside.
    ],
)
def test_symlinks_served_with_follow(links: Tree, path: str, target: str) -> None:
    opened = Root(str(links.root), follow_symlinks=True).open(segments(path))
    try:
        real = os.stat(links.root / target)
        assert (opened.stat.st_dev, opened.stat.st_ino) == (real.st_dev, real.st_ino)
        assert not stat.S_ISLNK(opened.stat.st_mode)
        assert opened.path == os.fsencode(links.root / target)
    finally:
        opened.close()


@pytest.mark.parametrize(
    "path",
    [
        "out_file",
        "out_dir",
        "out_dir/b.txt",
        "dangling",
        "dir/etc_passwd",
        "dir/relative_out",
        # What the target is must not show through: outside, a FIFO or a device is a 404 too.
        "out_fifo",
        "out_devnull",
    ],
)
def test_symlinks_out_of_the_root_are_not_found_with_follow(links: Tree, path: str) -> None:
    assert status(Root(str(links.root), follow_symlinks=True), path) == 404


def test_symlink_loop_with_follow_is_forbidden(links: Tree) -> None:
    assert status(Root(str(links.root), follow_symlinks=True), "loop_a") == 403  # ELOOP


def test_prefix_sibling_is_not_under_the_root(tmp_path: Path) -> None:
    # /x/root2 starts with the bytes of /x/root, but is not under it.
    (tmp_path / "root").mkdir()
    (tmp_path / "root2").mkdir()
    (tmp_path / "root2" / "secret").write_text("s")
    os.symlink("../root2/secret", tmp_path / "root" / "sibling")
    assert status(Root(str(tmp_path / "root"), follow_symlinks=True), "sibling") == 404


@pytest.mark.parametrize(("follow", "refused"), [(False, 403), (True, 404)])
def test_symlink_swapped_in_between_opens_is_refused(
    tree: Tree, follow: bool, refused: int
) -> None:
    root = Root(str(tree.root), follow_symlinks=follow)
    assert status(root, "a.txt") == 200
    assert status(root, "dir/b.txt") == 200
    # Swap each for a symlink to the same name outside, atomically, as an attacker would.
    os.symlink(tree.outside / "a.txt", tree.root / "swap")
    os.replace(tree.root / "swap", tree.root / "a.txt")
    shutil.rmtree(tree.root / "dir")
    os.symlink(tree.outside / "dir", tree.root / "dir")
    assert status(root, "a.txt") == refused
    assert status(root, "dir/b.txt") == refused


# --- Non-regular files -------------------------------------------------------------------


@pytest.mark.parametrize("follow", [False, True])
def test_fifo_is_refused_without_blocking(tree: Tree, follow: bool) -> None:
    os.mkfifo(tree.root / "fifo")
    assert status(Root(str(tree.root), follow_symlinks=follow), "fifo") == 403  # No writer.


@pytest.mark.parametrize("follow", [False, True])
def test_unix_socket_is_refused(tree: Tree, follow: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree.root)  # sun_path is short: bind a relative name.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind("sock")
        listener.listen()
        assert stat.S_ISSOCK(os.stat(tree.root / "sock").st_mode)
        assert status(Root(str(tree.root), follow_symlinks=follow), "sock") == 403  # ENXIO


@pytest.mark.parametrize("follow", [False, True])
def test_device_node_is_refused(tree: Tree, follow: bool) -> None:
    try:
        os.mknod(tree.root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("mknod needs CAP_MKNOD")
    assert status(Root(str(tree.root), follow_symlinks=follow), "null") == 403


# --- Errno mapping -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (errno.ENOENT, 404),
        (errno.ENOTDIR, 404),
        (errno.ENAMETOOLONG, 404),
        (errno.EACCES, 403),
        (errno.EPERM, 403),
        (errno.ELOOP, 403),
        (errno.ENXIO, 403),
        (errno.EMFILE, 503),
        (errno.ENFILE, 503),
        (errno.EIO, 500),
        (errno.EINVAL, 500),
        (errno.EOVERFLOW, 500),
    ],
)
def test_refusal_maps_errno(code: int, expected: int) -> None:
    refused = refusal(OSError(code, os.strerror(code)))
    assert isinstance(refused, Refused)
    assert refused.status_hint == expected
    assert os.strerror(code) in refused.reason


def test_refusal_without_errno_is_500() -> None:
    assert refusal(OSError("no errno")).status_hint == 500


def test_out_of_descriptors_is_503(tree: Tree) -> None:
    root = Root(str(tree.root))
    probe = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    os.close(probe)  # `probe` is now the lowest free descriptor.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    before = fd_count()
    resource.setrlimit(resource.RLIMIT_NOFILE, (probe, hard))
    try:
        with pytest.raises(Refused) as raised:
            root.open(["a.txt"])
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert raised.value.status_hint == 503  # EMFILE
    assert fd_count() == before
    assert status(root, "a.txt") == 200


# --- Permissions, which root does not have to ask for -------------------------------------

_DROP_PRIVILEGES = """
import os, sys
from zerocopy.files import Refused, Root
if os.geteuid() == 0:
    try:
        os.setgroups([])
        os.setgid({gid})
        os.setuid({uid})
    except OSError as exc:
        print("cannot drop privileges:", exc)
        sys.exit(77)
    assert os.geteuid() != 0
"""


def run_unprivileged(script: str, *args: str) -> list[str]:
    """Run ``script`` in a fresh interpreter that gives up root first; its output lines."""
    try:
        nobody = pwd.getpwnam("nobody")
        uid, gid = nobody.pw_uid, nobody.pw_gid
    except KeyError:
        uid = gid = 65534
    prelude = _DROP_PRIVILEGES.format(uid=uid, gid=gid)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", prelude + script, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    if done.returncode == 77:
        pytest.skip(done.stdout.strip())
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory that an unprivileged user can reach (``tmp_path`` lies under a 0700 one)."""
    path = Path(tempfile.mkdtemp(prefix="zerocopy-test-files-"))
    path.chmod(0o755)
    yield path
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            child.chmod(0o755)
    shutil.rmtree(path)


_OPEN_EACH = """
root = Root(sys.argv[1])
for path in sys.argv[2:]:
    try:
        root.open(path.split("/")).close()
        print(200)
    except Refused as exc:
        print(exc.status_hint)
"""


def test_permission_denied_is_403(public_dir: Path) -> None:
    (public_dir / "readable.txt").write_text("r")
    (public_dir / "secret.txt").write_text("s")
    (public_dir / "secret.txt").chmod(0)
    (public_dir / "locked").mkdir()
    (public_dir / "locked" / "inner.txt").write_text("i")
    (public_dir / "locked").chmod(0o700)
    # The readable file is the control: it shows that the unprivileged user reaches the root,
    # so the two 403s come from the modes of the files themselves.
    statuses = run_unprivileged(
        _OPEN_EACH, str(public_dir), "readable.txt", "secret.txt", "locked/inner.txt"
    )
    assert statuses == ["200", "403", "403"]


_CONSTRUCT = """
try:
    Root(sys.argv[1])
    print("ok")
except OSError as exc:
    print(type(exc).__name__)
"""


def test_unreadable_root_is_rejected(public_dir: Path) -> None:
    (public_dir / "open").mkdir()
    (public_dir / "shut").mkdir(mode=0o700)
    (public_dir / "shut").chmod(0)
    assert run_unprivileged(_CONSTRUCT, str(public_dir / "open")) == ["ok"]
    assert run_unprivileged(_CONSTRUCT, str(public_dir / "shut")) == ["PermissionError"]


# --- Constructing a Root -----------------------------------------------------------------


def test_root_must_exist(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Root(str(tmp_path / "missing"))


def test_root_must_be_a_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        Root(str(tmp_path / "file"))


def test_dangling_symlink_as_root(tmp_path: Path) -> None:
    os.symlink(tmp_path / "missing", tmp_path / "link")
    with pytest.raises(FileNotFoundError):
        Root(str(tmp_path / "link"))


@pytest.mark.parametrize("follow", [False, True])
def test_symlinked_root_is_held_until_checked(tree: Tree, tmp_path: Path, follow: bool) -> None:
    os.symlink(tree.root, tmp_path / "alias")
    root = Root(str(tmp_path / "alias") + "/", follow_symlinks=follow)
    assert root.path == str(tree.root)
    assert root.configured == str(tmp_path / "alias")
    opened = root.open(["dir", "b.txt"])
    try:
        assert opened.path == os.fsencode(tree.root / "dir" / "b.txt")
    finally:
        opened.close()
    assert not root.check()  # nothing changed
    # Re-pointing the alias (the deploy switch): the held root stays until check() follows
    # the alias, and from then on every path resolves in, and is checked against, the new one.
    os.remove(tmp_path / "alias")
    os.symlink(tree.outside, tmp_path / "alias")
    assert status(root, "a.txt") == 200
    opened = root.open(["a.txt"])
    try:
        assert os.read(opened.fd, 100) == b"a in root\n"
    finally:
        opened.close()
    assert root.check()
    assert root.path == str(tree.outside)
    opened = root.open(["a.txt"])
    try:
        assert os.read(opened.fd, 100) == (tree.outside / "a.txt").read_bytes()
    finally:
        opened.close()
    root.close()


def test_a_missing_root_path_mid_switch_keeps_the_old_root(tree: Tree, tmp_path: Path) -> None:
    os.symlink(tree.root, tmp_path / "alias")
    root = Root(str(tmp_path / "alias"))
    os.remove(tmp_path / "alias")  # `ln -sfn` unlinks, then links: a moment with no root
    assert not root.check()
    assert status(root, "a.txt") == 200
    root.close()


def test_a_root_swapped_for_a_symlink_tells_nothing_of_the_old_target(tmp_path: Path) -> None:
    # The root directory itself is replaced by a symlink elsewhere. Whatever the root path
    # names after check() is the root, and names are looked up only there: a name that exists
    # next to the new target, but not in it, is a plain 404, like any missing name.
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "page.txt").write_text("old")
    (tmp_path / "elsewhere" / "public").mkdir(parents=True)
    (tmp_path / "elsewhere" / "public" / "page.txt").write_text("new")
    (tmp_path / "elsewhere" / "secret.txt").write_text("secret")
    root = Root(str(tmp_path / "www"))
    os.rename(tmp_path / "www", tmp_path / "www.old")
    os.symlink(tmp_path / "elsewhere" / "public", tmp_path / "www")
    assert root.check()
    assert status(root, "page.txt") == 200
    assert status(root, ("..", "secret.txt")) == 404
    assert status(root, "secret.txt") == 404
    assert status(root, "missing.txt") == 404
    root.close()


@pytest.mark.parametrize("follow", [False, True])
def test_file_system_root_as_root(tree: Tree, follow: bool) -> None:
    root = Root("/", follow_symlinks=follow)
    assert status(root, ()) == 200
    assert status(root, str(tree.root / "a.txt").lstrip("/")) == 200
    assert status(root, str(tree.root / "missing").lstrip("/")) == 404
