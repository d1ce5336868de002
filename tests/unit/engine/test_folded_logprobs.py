"""The old-logprob pass folded into the loss pass: the same vLLM importance-sampling correction, loss and gradients
as TRL 1.16's own path (CPU, tiny model, the vLLM engine double)."""

import pytest
import torch
from transformers import AutoTokenizer

from open_grpo.data.models import resolve_model
from open_grpo.engine.folded_logprobs import fold_applies, is_ratio
from open_grpo.recipe.options import trl_behaviour
from open_grpo.rewards.demo import lowercase_letters
from open_grpo.trainer.config import OpenGRPOConfig
from open_grpo.trainer.grpo_trainer import OpenGRPOTrainer
from tests.support import fake_vllm


def make_trainer(tmp_path, fold: bool, options: dict | None = None, **config):
    from datasets import Dataset

    model = resolve_model("random:tiny")
    tokenizer = AutoTokenizer.from_pretrained(model)
    prompts = [{"prompt": [{"role": "user", "content": f"Count to {i}."}]} for i in range(8)]
    options = {**trl_behaviour(), "fold_old_logprobs": fold, **(options or {})}  # TRL's behaviour but for these
    args = OpenGRPOConfig(
        output_dir=str(tmp_path / ("fold" if fold else "trl")),
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=8,
        use_vllm=True,
        vllm_mode="colocate",
        use_cpu=True,
        bf16=False,
        report_to="none",
        max_steps=1,
        seed=0,
        model_init_kwargs={"dtype": "float32"},
        **options,
        **config,
    )
    return OpenGRPOTrainer(
        model=model,
        reward_funcs=[lowercase_letters],
        args=args,
        train_dataset=Dataset.from_list(prompts),
        processing_class=tokenizer,
    )


def loss_and_grads(trainer, batch):
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sequence_mask", "token_truncate"])
def test_folded_correction_matches_trl(monkeypatch, tmp_path, mode):
    fake_vllm.install(monkeypatch)
    # near the random model's own per-token logprob (-ln 151665 = -11.93), so the ratios are neither 0 nor clipped
    monkeypatch.setattr(fake_vllm, "SAMPLED_LOGPROB", -11.95)
    config = {"vllm_importance_sampling_mode": mode}
    inputs = [{"prompt": [{"role": "user", "content": "Count to three."}]}] * 4

    trl = make_trainer(tmp_path, fold=False, **config)
    trl.model.train()  # as in training: metrics go to "train"
    trl_batch = trl._generate_and_score_completions(inputs)
    assert "old_per_token_logps" in trl_batch and "importance_sampling_ratio" in trl_batch
    assert trl.telemetry.phases.seconds["logprobs"] > 0  # TRL's separate forward ran
    assert trl_batch["advantages"].abs().sum() > 0  # a non-trivial loss to compare
    trl_loss, trl_grads = loss_and_grads(trl, trl_batch)

    folded = make_trainer(tmp_path, fold=True, **config)
    assert folded._fold_old_logprobs
    folded.model.train()
    folded_batch = folded._generate_and_score_completions(inputs)
    # no old-logprob pass and no ratio while scoring; the same completions and advantages as TRL's
    assert "old_per_token_logps" not in folded_batch and "importance_sampling_ratio" not in folded_batch
    assert folded.telemetry.phases.seconds.get("logprobs", 0.0) == 0.0
    assert torch.equal(folded_batch["completion_ids"], trl_batch["completion_ids"])
    torch.testing.assert_close(folded_batch["advantages"], trl_batch["advantages"])
    folded_loss, folded_grads = loss_and_grads(folded, folded_batch)

    ratio = folded_batch["importance_sampling_ratio"]  # attached by the loss pass
    torch.testing.assert_close(ratio, trl_batch["importance_sampling_ratio"], rtol=1e-5, atol=1e-7)
    assert ((ratio > 0) & (ratio != 1)).any()
    torch.testing.assert_close(folded_loss, trl_loss, rtol=1e-5, atol=1e-8)
    assert trl_loss.abs() > 0 and trl_grads.keys() == folded_grads.keys()
    for name, grad in trl_grads.items():
        torch.testing.assert_close(folded_grads[name], grad, rtol=1e-4, atol=1e-8, msg=name)
    # TRL's correction metrics are logged from the loss pass instead
    for key in ("sampling/sampling_logp_difference/mean", "sampling/importance_sampling_ratio/mean"):
        assert folded._metrics["train"][key] == pytest.approx(trl._metrics["train"][key], rel=1e-5)


def test_fold_applies_only_when_old_logprobs_equal_the_loss_pass():
    from types import SimpleNamespace

    base = dict(use_vllm=True, vllm_importance_sampling_correction=True, steps_per_generation=1, num_iterations=1,
                gradient_accumulation_steps=1, use_liger_kernel=False)  # fmt: skip
    assert fold_applies(SimpleNamespace(**base)) == (True, "")
    for change in ({"num_iterations": 2}, {"steps_per_generation": 2}):
        ok, why = fold_applies(SimpleNamespace(**{**base, **change}))
        assert not ok and why, change
    # TRL 1.16's Liger path is its layer kernels only: the loss (and the fold) are TRL's own
    assert fold_applies(SimpleNamespace(**{**base, "use_liger_kernel": True})) == (True, "")
    for change in ({"vllm_importance_sampling_correction": False}, {"use_vllm": False}):  # no pass: nothing to say
        assert fold_applies(SimpleNamespace(**{**base, **change})) == (False, ""), change
    # completions consumed within one optimizer step (TRL's own condition for dropping old logprobs)
    assert fold_applies(SimpleNamespace(**{**base, "steps_per_generation": 2, "gradient_accumulation_steps": 4}))[0]


def test_is_ratio_modes():
    old = torch.tensor([[-1.0, -2.0, -3.0]])
    sampled = torch.tensor([[-1.5, -2.0, float("nan")]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    token = is_ratio(old, sampled, mask, "token_truncate", None, 1.2)
    torch.testing.assert_close(token, torch.tensor([[1.2, 1.0, 1.0]]))  # exp(0.5) clipped, NaN/masked -> 1
    seq = is_ratio(old, sampled, mask, "sequence_mask", None, 3.0)
    torch.testing.assert_close(seq, torch.exp(torch.tensor([[0.5]])))
    assert is_ratio(old, sampled, mask, "sequence_mask", None, 1.5).item() == 0.0  # above the bound: masked
    with pytest.raises(ValueError, match="unknown"):
        is_ratio(old, sampled, mask, "tokens", None, 3.0)
