"""The transformer container installs requirements/transformer.txt, without torch: its code must not need it."""

import subprocess
import sys


def test_transformer_entry_point_imports_without_torch():
    # Hide torch from a fresh interpreter, as in the transformer image, and import the whole entry point.
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import hfserve.transformer.__main__, hfserve.transformer.triton_backend\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "USE_TORCH": "0"})
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


def test_transformer_requirements_leave_out_torch():
    from pathlib import Path

    lines = (Path(__file__).parent.parent / "requirements" / "transformer.txt").read_text().splitlines()
    assert not [line for line in lines if line.startswith(("torch", "safetensors"))]
