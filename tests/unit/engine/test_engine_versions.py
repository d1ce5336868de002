"""engine/ reaches into TRL and vLLM internals: it refuses, naming them, versions it was not written against."""

import subprocess
import sys

from open_grpo.engine import SUPPORTED, version_problems


def test_supported_versions_pass_and_vllm_is_optional():
    assert version_problems({"trl": "1.16.0", "vllm": "0.26.0"}) == []
    assert version_problems({"trl": "1.16.3", "vllm": None}) == []


def test_other_versions_are_named():
    problems = version_problems({"trl": "1.17.0", "vllm": "0.27.1"})
    assert problems == [
        f"trl 1.17.0 is installed; open_grpo supports trl=={SUPPORTED['trl']}.*",
        f"vllm 0.27.1 is installed; open_grpo supports vllm=={SUPPORTED['vllm']}.*",
    ]
    assert version_problems({"trl": "1.160.0"})  # a prefix is not a series
    assert version_problems({"trl": None}) == ["trl is not installed (open_grpo needs trl==1.16.*)"]


def test_import_fails_with_the_message(tmp_path):
    # a fake `trl` distribution of another version, first on the path
    dist = tmp_path / "trl-9.0.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: trl\nVersion: 9.0.0\n")
    code = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import open_grpo.engine"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode != 0
    assert "UnsupportedVersionError" in done.stderr and "trl 9.0.0 is installed" in done.stderr
