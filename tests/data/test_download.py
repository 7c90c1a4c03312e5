"""Tests for seqtorch.data.download: verified, atomic downloads over file:// and a local HTTP server."""

import functools
import hashlib
import http.server
import os
import stat
import threading
from pathlib import Path

import pytest

from support.file_faults import SyncRecorder, held_by_a_live_writer, leftover_temp
from seqtorch.data.download import cache_dir, download, sha256sum

PAYLOAD = bytes(range(256)) * 5000  # 1.28 MB: several read chunks
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def source(tmp_path) -> Path:
    src = tmp_path / "src" / "blob.bin"
    src.parent.mkdir()
    src.write_bytes(PAYLOAD)
    return src


@pytest.fixture
def http_root(tmp_path):
    """Serve tmp_path/www on 127.0.0.1 (random port); yields (root dir, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_sha256sum_matches_hashlib(source):
    assert sha256sum(source) == PAYLOAD_SHA


def test_cache_dir_env_override(tmp_path, monkeypatch):
    target = tmp_path / "a" / "b"
    monkeypatch.setenv("SEQTORCH_DATA", str(target))
    assert cache_dir() == target
    assert target.is_dir()


def test_cache_dir_default(tmp_path, monkeypatch):
    monkeypatch.delenv("SEQTORCH_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "seqtorch"
    assert cache_dir().is_dir()


def test_file_url_download_verified(source, tmp_path):
    dest = tmp_path / "out" / "blob.bin"
    got = download(source.as_uri(), dest, PAYLOAD_SHA.upper(), expected_size=len(PAYLOAD))
    assert got == dest
    assert dest.read_bytes() == PAYLOAD
    assert _leftovers(dest.parent) == ["blob.bin"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600


def test_http_download(http_root, tmp_path):
    root, base = http_root
    (root / "blob.bin").write_bytes(PAYLOAD)
    dest = tmp_path / "out" / "blob.bin"
    download(f"{base}/blob.bin", dest, PAYLOAD_SHA, desc="blob")
    assert dest.read_bytes() == PAYLOAD
    assert _leftovers(dest.parent) == ["blob.bin"]


def test_checksum_mismatch_leaves_nothing(source, tmp_path):
    dest = tmp_path / "out" / "blob.bin"
    wrong = "0" * 64
    with pytest.raises(RuntimeError) as info:
        download(source.as_uri(), dest, wrong)
    msg = str(info.value)
    assert "sha256 mismatch" in msg and source.as_uri() in msg
    assert wrong in msg and PAYLOAD_SHA in msg
    assert _leftovers(dest.parent) == []


def test_size_mismatch_leaves_nothing(source, tmp_path):
    dest = tmp_path / "out" / "blob.bin"
    with pytest.raises(RuntimeError, match=f"expected {len(PAYLOAD) + 1} bytes, got {len(PAYLOAD)}"):
        download(source.as_uri(), dest, expected_size=len(PAYLOAD) + 1)
    assert _leftovers(dest.parent) == []


def test_http_checksum_mismatch_leaves_nothing(http_root, tmp_path):
    root, base = http_root
    (root / "blob.bin").write_bytes(PAYLOAD[:-1])  # a truncated copy on the server
    dest = tmp_path / "out" / "blob.bin"
    with pytest.raises(RuntimeError, match="sha256 mismatch"):
        download(f"{base}/blob.bin", dest, PAYLOAD_SHA)
    assert _leftovers(dest.parent) == []


def test_missing_url_raises_clear_error(http_root, tmp_path):
    _, base = http_root
    dest = tmp_path / "out" / "nothing.bin"
    with pytest.raises(RuntimeError, match=f"could not open {base}/nothing.bin"):
        download(f"{base}/nothing.bin", dest)
    assert not dest.exists()
    assert _leftovers(dest.parent) == []


def test_existing_verified_file_is_not_fetched_again(tmp_path):
    dest = tmp_path / "blob.bin"
    dest.write_bytes(PAYLOAD)
    # The URL does not exist: a fetch would fail, so success proves nothing was fetched.
    missing = (tmp_path / "absent.bin").as_uri()
    assert download(missing, dest, PAYLOAD_SHA) == dest
    assert download(missing, dest) == dest  # no checksum: existence is enough


def test_existing_corrupt_file_is_replaced(source, tmp_path):
    dest = tmp_path / "out" / "blob.bin"
    dest.parent.mkdir()
    dest.write_bytes(b"corrupt")
    download(source.as_uri(), dest, PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD


def test_existing_corrupt_file_survives_failed_refetch(tmp_path):
    """A failed re-download must not destroy what was there (nor leave a temp file)."""
    dest = tmp_path / "blob.bin"
    dest.write_bytes(b"corrupt")
    with pytest.raises(RuntimeError):
        download((tmp_path / "absent.bin").as_uri(), dest, PAYLOAD_SHA)
    assert _leftovers(tmp_path) == ["blob.bin"]


def test_bad_sha256_argument(source, tmp_path):
    with pytest.raises(ValueError, match="64 hex digits"):
        download(source.as_uri(), tmp_path / "x", "abc")


def test_download_is_fsynced_before_its_rename(source, tmp_path, monkeypatch):
    sync = SyncRecorder(monkeypatch)
    dest = tmp_path / "out" / "blob.bin"
    download(source.as_uri(), dest, PAYLOAD_SHA)
    assert sync.synced_before_rename(dest)


def test_killed_downloads_are_cleaned_at_the_next_successful_one(source, tmp_path):
    out = tmp_path / "out"
    killed = leftover_temp(out, "blob.bin", age_s=3600, tag="killed00", size=len(PAYLOAD) // 2)
    live = leftover_temp(out, "blob.bin", age_s=3600, tag="writing0")
    # A file created a moment ago may belong to a writer that has not taken its lock yet.
    just_made = leftover_temp(out, "blob.bin", age_s=0, tag="justmade")
    other = leftover_temp(out, "other.bin", age_s=3600, tag="killed01")  # another entry's: kept
    with held_by_a_live_writer(live):  # another process still downloading the same file
        download(source.as_uri(), out / "blob.bin", PAYLOAD_SHA)
        assert not killed.exists()
        assert live.exists() and just_made.exists() and other.exists()
    assert (out / "blob.bin").read_bytes() == PAYLOAD


def test_a_failed_download_keeps_the_other_temp_files(tmp_path):
    """Cleaning happens after a success only: a failure says nothing about the other writers."""
    killed = leftover_temp(tmp_path, "blob.bin", age_s=3600, tag="killed00")
    with pytest.raises(RuntimeError):
        download((tmp_path / "absent.bin").as_uri(), tmp_path / "blob.bin", PAYLOAD_SHA)
    assert _leftovers(tmp_path) == [killed.name]
