"""The colocated engine's sampling options (engine/generation.py) against the vLLM engine double (CPU)."""

import gc

import pytest
import torch

from open_grpo.engine.generation import gc_paused, sampling_params_merged
from tests.support import fake_vllm
from tests.unit.engine.test_folded_logprobs import loss_and_grads, make_trainer

PROMPTS = [{"prompt": [{"role": "user", "content": "Count to three."}]}] * 4


def test_output_settings_under_the_users():
    assert sampling_params_merged(None, False, True) == {"detokenize": False, "flat_logprobs": True}
    assert sampling_params_merged({"detokenize": True, "min_tokens": 2}, False, True) == {
        "detokenize": True, "flat_logprobs": True, "min_tokens": 2}  # fmt: skip


def test_gc_paused_restores_state():
    seen = []
    run = gc_paused(lambda: seen.append(gc.isenabled()))
    assert gc.isenabled()
    run()
    assert seen == [False] and gc.isenabled()
    gc.disable()
    try:
        run()
        assert not gc.isenabled()  # a collector the caller turned off stays off
    finally:
        gc.enable()


@pytest.mark.slow
def test_trainer_applies_sampling_options(monkeypatch, tmp_path):
    fake_vllm.install(monkeypatch)
    options = {"vllm_detokenize": False, "vllm_flat_logprobs": True, "vllm_sampling_logprobs": "auto",
               "pause_gc_in_generation": True}  # fmt: skip
    trainer = make_trainer(tmp_path, fold=True, options=options)
    trainer.model.train()
    trainer._generate_and_score_completions(PROMPTS)
    llm = fake_vllm.FakeLLM.instances[-1]
    params = llm.sampling_params[-1]
    # the IS correction is on (TRL's default): the sampled-token logprob is still asked for
    assert params.detokenize is False and params.flat_logprobs is True and params.logprobs == 0
    assert llm.gc_enabled == [False] and gc.isenabled()


@pytest.mark.slow
def test_no_sampling_logprobs_when_the_loss_does_not_read_them(monkeypatch, tmp_path):
    """IS correction off: `auto` asks vLLM for no logprobs; loss and gradients are the same as with them."""
    fake_vllm.install(monkeypatch)
    config = {"vllm_importance_sampling_correction": False}
    results = {}
    for mode in ("always", "auto"):
        trainer = make_trainer(tmp_path / mode, fold=False, options={"vllm_sampling_logprobs": mode}, **config)
        trainer.model.train()
        batch = trainer._generate_and_score_completions(PROMPTS)
        results[mode] = (fake_vllm.FakeLLM.instances[-1].sampling_params[-1].logprobs, batch,
                         *loss_and_grads(trainer, batch))  # fmt: skip
    (lp_always, b_always, loss_always, grads_always), (lp_auto, b_auto, loss_auto, grads_auto) = (
        results["always"], results["auto"])  # fmt: skip
    assert lp_always == 0 and lp_auto is None
    assert torch.isnan(b_auto["sampling_per_token_logps"]).all()  # placeholders, never read
    assert torch.equal(b_auto["completion_ids"], b_always["completion_ids"])
    assert loss_always.abs() > 0
    torch.testing.assert_close(loss_auto, loss_always, rtol=0, atol=0)
    for name, grad in grads_always.items():
        torch.testing.assert_close(grads_auto[name], grad, rtol=0, atol=0)
