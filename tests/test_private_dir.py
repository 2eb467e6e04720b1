"""Folders whose contents are later run or served are ours alone (security review M4, local part): Triton's model
repository and the wheel-Triton copy are created 0700, another user's or a group-writable folder is refused, and
the lock file never follows a planted symlink (which used to truncate its target)."""

import os
import stat

import pytest
from hfserve.private_dir import UnsafeDirectory, open_lock, private_dir
from hfserve.triton.repository import build_repository


def test_a_missing_folder_is_created_for_this_user_only(tmp_path):
    made = private_dir(tmp_path / "a" / "repo")
    assert stat.S_IMODE(made.stat().st_mode) == 0o700 and made.stat().st_uid == os.getuid()
    assert private_dir(made) == made  # ours already: accepted


def test_group_writable_symlinked_or_foreign_folders_are_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(UnsafeDirectory, match="writable by group or others"):
        private_dir(shared)
    (tmp_path / "link").symlink_to(tmp_path / "a-real-dir", target_is_directory=True)
    (tmp_path / "a-real-dir").mkdir()
    with pytest.raises(UnsafeDirectory, match="symlink"):
        private_dir(tmp_path / "link")
    if os.getuid() == 0:  # as root another owner can be made; as a user, own folders are all there is
        foreign = tmp_path / "foreign"
        foreign.mkdir(mode=0o755)
        os.chown(foreign, 12345, 12345)
        with pytest.raises(UnsafeDirectory, match="belongs to uid 12345"):
            private_dir(foreign)


def test_the_lock_file_does_not_follow_a_planted_symlink(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / ".lock").symlink_to(victim)
    with pytest.raises(OSError):
        open_lock(tmp_path / ".lock")
    assert victim.read_text() == "precious"
    fd = open_lock(tmp_path / "real.lock")
    os.close(fd)
    assert (tmp_path / "real.lock").is_file()


def test_the_repository_builder_refuses_a_shared_repository_folder(tiny_models, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    repo.chmod(0o777)
    with pytest.raises(UnsafeDirectory):
        build_repository(tiny_models("text_embedding"), repo, "tiny", device="cpu")
    assert not (repo / "tiny").exists()
    repo.chmod(0o700)
    build_repository(tiny_models("text_embedding"), repo, "tiny", device="cpu")
    assert (repo / "tiny" / "1" / "model.py").is_file()
