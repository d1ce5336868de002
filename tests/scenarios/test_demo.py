"""`make demo`'s promise: on CPU, no hub, the reward visibly rises (last 10 logged steps >= first 10 + 0.2)."""

import pytest

from open_grpo.train import main
from tests.conftest import ROOT


@pytest.mark.slow
def test_demo_reward_rises(tmp_path):
    result = main(str(ROOT / "recipes" / "demo.yaml"), ["--output_dir", str(tmp_path / "demo")])
    assert result["steps"] == 60
    assert result["reward_last"] >= result["reward_first"] + 0.2, result
    assert (tmp_path / "demo" / "reward_curve.png").exists()
