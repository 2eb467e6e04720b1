"""The Triton launcher's own defaults keep Triton on loopback (security review L8), and model names that would make
the repository builder replace `.` or `..` are refused (L9)."""

import pytest
from hfserve.config import ConfigError, RepositoryConfig
from hfserve.triton import __main__ as launcher


def test_triton_binds_loopback_unless_remote_is_asked_for(tmp_path, capsys):
    common = ["--model_name", "m", "--model_dir", str(tmp_path)]
    assert launcher.parse_args(common).bind_address == "127.0.0.1"
    with pytest.raises(SystemExit) as refused:
        launcher.parse_args([*common, "--bind_address", "0.0.0.0"])
    assert refused.value.code == 2 and "--allow_remote_triton" in capsys.readouterr().err
    assert launcher.parse_args([*common, "--bind_address", "0.0.0.0", "--allow_remote_triton"]).bind_address == "0.0.0.0"


@pytest.mark.parametrize("name", [".", "..", ".hidden"])
def test_model_names_starting_with_a_dot_are_refused(name):
    with pytest.raises(ConfigError, match="not starting with '.'"):
        RepositoryConfig(model_name=name).validate()
    RepositoryConfig(model_name="all-MiniLM-L6.v2").validate()
