"""LoRA and QLoRA through TRL's own path: `trl.get_peft_config(model_args)` -> `GRPOTrainer(peft_config=...)`.

    use_peft: true
    lora_r: 64
    lora_alpha: 128
    lora_target_modules: all-linear      # or a list of module names: [q_proj, v_proj]; unset: PEFT's default
    load_in_4bit: true                   # QLoRA: the frozen base in 4-bit (bitsandbytes, CUDA only)

TRL wraps the model in a PEFT adapter (only the adapter trains; with `beta > 0` the reference model is the base with
the adapter switched off), merges the adapter into the base weights before each push to the vLLM engine (names
without `base_layer`/`lora_`), and saves the adapter (`adapter_config.json`, `adapter_model.safetensors`) to
`output_dir` and to every checkpoint, from which a run resumes. This module says what this machine lacks for QLoRA,
builds the configs with TRL's functions and sizes the adapter for the memory plan; the recipe keys and target modules
are checked with the recipe (recipe/rules_model.py, recipe/lora_targets.py).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, replace

from open_grpo.planning.memory_plan import DTYPE_BYTES
from open_grpo.recipe import lora_targets
from open_grpo.recipe.lora_targets import target_modules
from open_grpo.recipe.schema import read_snapshot

logger = logging.getLogger(__name__)

SIZED_AS = "llama"  # the memory plan sizes an adapter on a model type lora_targets.py does not know as on this one
# Frozen base bytes per parameter of a quantized linear layer: bitsandbytes packs 4-bit (or 8-bit) values and keeps
# one fp32 absmax per block of 64 values (bitsandbytes' default blocksize); other layers stay in 16-bit.
QUANTIZED_BYTES = {4: 0.5 + 4 / 64, 8: 1.0 + 4 / 64}
# How the plan names the base's dtype (memory_plan.DTYPE_BYTES: "auto" is planned as 16-bit, None as transformers'
# float32 default)
DTYPE_NAMES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32", None: "fp32",
               "auto": "its saved dtype (planned as 16-bit)"}  # fmt: skip


def runtime_problems(model_args, training) -> list[str]:
    """What stops a QLoRA recipe on this machine (checked before training, not when planning on a laptop)."""
    import torch
    from transformers.utils.import_utils import BITSANDBYTES_MIN_VERSION, is_bitsandbytes_available

    bits = quantized_bits(model_args)
    if not bits or not model_args.use_peft:  # without use_peft, the recipe layer already says to remove it
        return []
    key = f"load_in_{bits}bit"
    if training.use_cpu or not torch.cuda.is_available():
        where = "'use_cpu: true'" if training.use_cpu else "no CUDA GPU is visible"
        return [
            f"'{key}: true' quantizes the base model with bitsandbytes, which needs a CUDA GPU, but {where}: run it "
            f"on a GPU, or remove '{key}' to train the LoRA adapter on the unquantized base"
        ]
    if not is_bitsandbytes_available():  # transformers' check, with the version it needs
        return [f"'{key}: true' needs bitsandbytes>={BITSANDBYTES_MIN_VERSION}: pip install -e '.[gpu]'"]
    return []


def quantized_bits(model_args) -> int | None:
    return 4 if model_args.load_in_4bit else 8 if model_args.load_in_8bit else None


def peft_config(model_args):
    """TRL's `get_peft_config` (None without `use_peft`), with `lora_target_modules` read as the recipe means it."""
    from trl import get_peft_config

    if not model_args.use_peft:
        return None
    targets = target_modules(model_args.lora_target_modules)
    logger.info(
        "LoRA adapter: r=%d, alpha=%g, dropout=%g, on %s%s", model_args.lora_r, model_args.lora_alpha,
        model_args.lora_dropout, targets or "PEFT's default modules",
        f", base in {quantized_bits(model_args)}-bit" if quantized_bits(model_args) else "",
    )  # fmt: skip
    args = copy.copy(model_args)  # not dataclasses.replace: ModelConfig's __post_init__ would collapse it again
    args.lora_target_modules = targets
    return get_peft_config(args)


# ---------------------------------------------------------------------------------------------------- memory plan


@dataclass(frozen=True)
class AdapterPlan:
    """What the memory plan needs to know about a LoRA run."""

    trainable_params: int  # the adapter's (+ `lora_modules_to_save`): only these get gradients and optimizer state
    base_weight_bytes: float  # the frozen base model (bf16, or 4-/8-bit linear layers)
    label: str

    def describe(self, num_params: int) -> str:
        return f"{self.label}: {self.trainable_params / 1e6:.1f} M trainable params ({self.trainable_params / num_params:.2%})"


def lora_trainable_params(facts, r: int, target, modules_to_save=None) -> int:
    """Trainable parameters of a rank-`r` LoRA adapter on the modules `target` selects, matched as PEFT matches them
    (recipe/lora_targets.py; None: PEFT's default for the model type), plus full copies of `modules_to_save`."""
    modules = module_features(facts)
    layout = facts if facts.model_type in lora_targets.COVERED_MODEL_TYPES else replace(facts, model_type=SIZED_AS)
    names = lora_targets.module_names(layout)
    if target is None:
        target = read_snapshot()["peft_default_targets"][layout.model_type]
    chosen = [m for m in lora_targets.adapted_modules(names, target, modules_to_save) if m in modules]
    saved = [m for m in modules if any(m == s or m.endswith("." + s) for s in modules_to_save or ())]
    adapters = sum(r * (modules[m][0] + modules[m][1]) for m in chosen)  # A: r x in, B: out x r
    return adapters + sum(modules[m][0] * modules[m][1] for m in saved)


def module_features(facts) -> dict[str, tuple[int, int]]:
    """Every adaptable module of a model of this shape -> (in, out) features."""
    h, i = facts.hidden_size, facts.intermediate_size
    q, kv = facts.num_attention_heads * facts.head_size, facts.num_key_value_heads * facts.head_size
    per_layer = {"self_attn.q_proj": (h, q), "self_attn.k_proj": (h, kv), "self_attn.v_proj": (h, kv),
                 "self_attn.o_proj": (q, h), "mlp.gate_proj": (h, i), "mlp.up_proj": (h, i), "mlp.down_proj": (i, h)}  # fmt: skip
    out = {
        f"model.layers.{n}.{name}": shape for n in range(facts.num_hidden_layers) for name, shape in per_layer.items()
    }
    out["lm_head"] = (h, facts.vocab_size)
    out["model.embed_tokens"] = (facts.vocab_size, h)
    return out


def adapter_plan(facts, model_args, zero_stage: int = 0) -> AdapterPlan | None:
    """The memory plan's view of a recipe's LoRA (None without `use_peft`)."""
    if not model_args.use_peft:
        return None
    return plan_for(
        facts, model_args.lora_r, model_args.lora_target_modules, model_args.lora_modules_to_save,
        quantized_bits(model_args), base_dtype(model_args.dtype, zero_stage),
    )  # fmt: skip


def base_dtype(dtype, zero_stage: int) -> str | None:
    """The frozen base's dtype in training: DeepSpeed (bf16) casts the whole model to bf16; else the load dtype."""
    return "bfloat16" if zero_stage else None if dtype is None else str(dtype).removeprefix("torch.")


def plan_for(facts, r: int, target, modules_to_save=None, bits: int | None = None, dtype="bfloat16") -> AdapterPlan:
    trainable = lora_trainable_params(facts, r, target, modules_to_save)
    layer_linear = sum(a * b for m, (a, b) in module_features(facts).items() if m.startswith("model.layers."))
    unquantized = DTYPE_BYTES.get(dtype, 2)
    per_param = QUANTIZED_BYTES[bits] if bits else unquantized
    base = per_param * layer_linear + unquantized * (facts.num_params - layer_linear)
    kind = f"{bits}-bit" if bits else DTYPE_NAMES.get(dtype, str(dtype))
    label = f"LoRA r={r} on {target_modules(target) or 'PEFT default modules'}, base in {kind}"
    return AdapterPlan(trainable_params=trainable, base_weight_bytes=base, label=label)


def trainer_adapter_plan(facts, peft_config, quantization_config, dtype="bfloat16") -> AdapterPlan | None:
    """The same from the `peft_config` and `quantization_config` the trainer was given."""
    if peft_config is None:
        return None
    q = quantization_config
    bits = None if q is None else 4 if q.load_in_4bit else 8 if q.load_in_8bit else None
    return plan_for(facts, peft_config.r, peft_config.target_modules, peft_config.modules_to_save, bits, dtype)
