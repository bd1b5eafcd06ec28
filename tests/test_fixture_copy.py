import hashlib

from helpers import FIXTURES, manifest


def test_fixture_copy_matches_manifest():
    files = manifest()["files"]
    assert files, "manifest lists no files"
    for name, meta in files.items():
        path = FIXTURES / "tiny" / name
        assert path.is_file(), f"missing fixture {path}"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == meta["sha256"], name
