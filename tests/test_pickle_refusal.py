"""Pickle weights are refused at start unless --allow_pickle_weights (security review L4): runtime 1's command line,
the Triton launcher and the repository builder, on a tiny checkpoint whose weights torch.save wrote as pickle."""

import shutil

import pytest
import torch
from hfserve.engine.loading import PickleWeightsRefused, check_weights
from hfserve.huggingface import __main__ as runtime1
from hfserve.triton import __main__ as launcher
from hfserve.triton import repository
from transformers import AutoModel


@pytest.fixture(scope="module")
def pickled(tiny_models, tmp_path_factory):
    """The tiny embedding checkpoint with pytorch_model.bin (torch.save of its state dict) instead of safetensors."""
    source = tiny_models("text_embedding")
    target = tmp_path_factory.mktemp("pickled") / "text_embedding"
    shutil.copytree(source, target)
    model = AutoModel.from_pretrained(str(source))
    for weights in target.glob("*.safetensors"):
        weights.unlink()
    torch.save(model.state_dict(), target / "pytorch_model.bin")
    return target


def test_the_check_names_the_pickle_file_and_passes_safetensors(pickled, tiny_models):
    with pytest.raises(PickleWeightsRefused) as refused:
        check_weights(pickled)
    assert refused.value.path == pickled / "pytorch_model.bin"
    assert "pytorch_model.bin" in str(refused.value) and "--allow_pickle_weights" in str(refused.value)
    check_weights(pickled, allow_pickle_weights=True)
    check_weights(tiny_models("text_embedding"))  # safetensors: nothing to refuse


def test_a_pickle_only_module_folder_is_refused_beside_safetensors_at_the_top(tiny_models, tmp_path):
    model_dir = shutil.copytree(tiny_models("text_embedding"), tmp_path / "m")
    (model_dir / "training_args.bin").write_bytes(b"not weights")  # Trainer's file: never loaded as weights
    check_weights(model_dir)
    (model_dir / "2_Dense").mkdir()
    (model_dir / "2_Dense" / "model.ckpt").write_bytes(b"\x80\x04")
    with pytest.raises(PickleWeightsRefused) as refused:
        check_weights(model_dir)
    assert refused.value.path == model_dir / "2_Dense" / "model.ckpt"


def test_runtime_1_refuses_pickle_weights_at_start_and_loads_them_when_allowed(pickled):
    argv = ["--model_name", "pickled", "--model_dir", str(pickled), "--device", "cpu"]
    with pytest.raises(SystemExit) as refused:
        runtime1.main(argv)
    assert "pytorch_model.bin" in str(refused.value.code) and "--allow_pickle_weights" in str(refused.value.code)
    model = runtime1.build_model(runtime1.cli.parse(runtime1.build_parser(), runtime1.cli.config.HUGGINGFACE_GROUPS,
                                                    [*argv, "--allow_pickle_weights"]))
    model.load()
    assert model.ready


def test_the_repository_builder_and_the_launcher_refuse_pickle_weights(pickled, tmp_path, capsys, caplog):
    common = ["--model_name", "pickled", "--model_dir", str(pickled), "--repository_dir", str(tmp_path / "repo")]
    assert repository.main(common) == 2
    assert "pytorch_model.bin" in capsys.readouterr().err
    assert not (tmp_path / "repo" / "pickled").exists()
    assert launcher.main([*common, "--tritonserver", "/nonexistent/tritonserver"]) == 2
    assert any("pytorch_model.bin" in r.getMessage() for r in caplog.records)  # refused before looking for Triton
    assert not (tmp_path / "repo" / "pickled").exists()
    spec = repository.build_repository(pickled, tmp_path / "repo", "pickled", device="cpu",
                                       allow_pickle_weights=True)
    assert (tmp_path / "repo" / "pickled" / "config.pbtxt").is_file() and spec.task.value == "text_embedding"
