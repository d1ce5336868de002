"""Preflight: will this recipe run on this cluster? Offline, no GPU, in seconds.

    open-grpo check qwen-math-1.5b                          # 1 node x 8 GPUs of 80 GiB, ZeRO-3
    open-grpo check qwen-math-7b --nodes 2 --gpus-per-node 4 --gpu-mem-gib 141 --accelerate zero2

Prints the process layout (data-parallel replicas, tensor-parallel groups of consecutive ranks), the batch
arithmetic and a memory plan per GPU; exits non-zero listing every problem. The trainer runs the same checks at
start-up with the real world size and cards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

GIB = 2**30
VLLM_OVERHEAD_GIB = 1.5  # vLLM's own activations, CUDA graphs and allocator slack (a stated estimate)

# Model facts for the models the recipes name, so `check` works offline.
KNOWN_MODELS = {
    "Qwen/Qwen2.5-Math-1.5B": dict(hidden_size=1536, num_hidden_layers=28, num_attention_heads=12,
                                   num_key_value_heads=2, intermediate_size=8960, vocab_size=151936,
                                   tie_word_embeddings=True),
    "Qwen/Qwen2.5-Math-7B": dict(hidden_size=3584, num_hidden_layers=28, num_attention_heads=28,
                                 num_key_value_heads=4, intermediate_size=18944, vocab_size=152064,
                                 tie_word_embeddings=False),
}  # fmt: skip

DEFAULT_GPU_MEM_GIB = 80.0  # planning offline with no GPU visible: an 80 GB card (A100/H100), the common case
ZERO_STAGE = {"zero3": 3, "zero2": 2, "zero1": 1, "ddp": 0, "single_gpu": 0, "cpu": 0}


def card_memory_gib() -> tuple[float, str]:
    """(memory of this machine's first GPU in GiB, where that number comes from). Asks nvidia-smi, so no CUDA context
    is created; with no GPU visible, the documented default and a note saying so."""
    if shutil.which("nvidia-smi"):
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
        )
        if out.returncode == 0 and out.stdout.strip():
            name, mib = out.stdout.splitlines()[0].rsplit(",", 1)
            return float(mib) / 1024, f"this machine's {name.strip()}"
    return DEFAULT_GPU_MEM_GIB, f"no GPU visible: planned for a {DEFAULT_GPU_MEM_GIB:g} GiB card (set --gpu-mem-gib)"


@dataclass
class ModelFacts:
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def num_params(self) -> int:
        h, kv = self.hidden_size, self.num_key_value_heads * self.head_dim
        attn = h * h + 2 * h * kv + h * h + h + 2 * kv  # q, k, v, o (+ q/k/v biases, as Qwen2)
        mlp = 3 * h * self.intermediate_size
        embed = self.vocab_size * h * (1 if self.tie_word_embeddings else 2)
        return embed + self.num_hidden_layers * (attn + mlp + 2 * h) + h


def model_facts(name: str) -> ModelFacts:
    """From a local config.json, a `random:<shape>` name, or the built-in table."""
    from .models import RANDOM_PREFIX

    keys = ModelFacts.__dataclass_fields__
    if name.startswith(RANDOM_PREFIX):
        from .tiny import SHAPES

        shape = SHAPES[name[len(RANDOM_PREFIX) :]]
        return ModelFacts(vocab_size=151665 if name.endswith("tiny") else 151936, **shape)
    config = Path(name) / "config.json"
    if config.is_file():
        data = json.loads(config.read_text())
        data.setdefault("num_key_value_heads", data.get("num_attention_heads"))
        data.setdefault("tie_word_embeddings", False)
        return ModelFacts(**{k: data[k] for k in keys})
    if name in KNOWN_MODELS:
        return ModelFacts(**KNOWN_MODELS[name])
    raise KeyError(f"no facts for model {name!r}: give a local path with config.json (or add it to KNOWN_MODELS)")


class PlanFailed(Exception):
    """The plan for a layout has errors (a failed check, exit 1): one line per problem."""

    def __init__(self, problems: list[str], where: str):
        self.problems = problems
        super().__init__(f"{where}: {len(problems)} problem(s):\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass
class Plan:
    lines: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def render(self) -> str:
        out = list(self.lines)
        out += [f"WARNING: {w}" for w in self.warnings]
        out += [f"ERROR: {e}" for e in self.errors]
        return "\n".join(out)


def plan(
    training,
    max_prompt_tokens: int | None,
    facts: ModelFacts,
    *,
    gpus_per_node: int,
    nodes: int,
    gpu_mem_gib: float,
    zero_stage: int,
    adapter=None,
) -> Plan:
    """Layout, batch arithmetic and memory per GPU for a recipe on `nodes` x `gpus_per_node` cards. `adapter`: a
    `lora.AdapterPlan` for a LoRA run (gradients and optimizer state for the adapter only, the base frozen)."""
    p = Plan()
    world = gpus_per_node * nodes
    tp = training.vllm_tensor_parallel_size if training.use_vllm and training.vllm_mode == "colocate" else 1
    colocate = training.use_vllm and training.vllm_mode == "colocate"

    # Layout.
    p.lines.append(f"== layout: {nodes} node(s) x {gpus_per_node} GPU(s) = world size {world}")
    if world % tp:
        p.errors.append(f"world size {world} is not a multiple of vllm_tensor_parallel_size {tp}")
    elif gpus_per_node % tp:
        p.errors.append(
            f"vllm_tensor_parallel_size {tp} does not divide {gpus_per_node} GPUs per node: a TP group would span "
            "nodes (TRL groups consecutive ranks); pick a TP that divides the GPUs per node"
        )
    if facts.num_attention_heads % tp:
        p.errors.append(f"the model's {facts.num_attention_heads} attention heads do not divide by TP {tp}")
    if colocate and not p.errors:
        groups = [list(range(i, i + tp)) for i in range(0, world, tp)]
        shown = ", ".join(str(g) for g in groups[:8]) + (" ..." if len(groups) > 8 else "")
        p.lines.append(f"training: {world} data-parallel ranks, ZeRO stage {zero_stage}")
        p.lines.append(f"vLLM (colocated): {len(groups)} engine(s), TP {tp}, groups of consecutive ranks: {shown}")
    elif training.use_vllm:
        p.lines.append(f"vLLM: server mode at {training.vllm_server_host}:{training.vllm_server_port} (separate GPUs)")
    else:
        p.lines.append("generation: transformers (use_vllm: false)")

    # Batch arithmetic.
    per_device = training.per_device_train_batch_size
    spg = training.steps_per_generation or training.gradient_accumulation_steps
    completions_per_step = per_device * world * training.gradient_accumulation_steps
    generation_batch = per_device * world * spg
    prompt_len = max_prompt_tokens or 512
    seq_len = prompt_len + training.max_completion_length
    p.lines.append("== batch")
    p.lines.append(
        f"per optimizer step: {completions_per_step} completions = {completions_per_step // training.num_generations} "
        f"prompts x {training.num_generations} generations; per GPU: {per_device * training.gradient_accumulation_steps}"
    )
    p.lines.append(
        f"generation batch: {generation_batch} completions (every {spg} step(s)); per vLLM engine: "
        f"{per_device * spg * tp} sequences of <= {seq_len} tokens"
    )
    if generation_batch % training.num_generations:
        p.errors.append(
            f"num_generations {training.num_generations} does not divide the generation batch {generation_batch}"
        )

    # Memory per GPU.
    params = facts.num_params
    # LoRA (lora.py): only the adapter's parameters get gradients and optimizer state; the frozen base is bf16/4-bit.
    trainable = params if adapter is None else adapter.trainable_params
    base_bytes = 2 * params if adapter is None else adapter.base_weight_bytes + 2 * trainable
    shard = {0: (1, 1, 1), 1: (1, 1, world), 2: (1, world, world), 3: (world, world, world)}[zero_stage]
    weights = base_bytes / shard[0]  # bf16
    grads = 2 * trainable / shard[1]
    optim = 12 * trainable / shard[2]  # fp32 master copy + Adam's two moments
    tokens = per_device * seq_len
    layer_act = tokens * facts.hidden_size * 2
    if training.gradient_checkpointing:
        acts = layer_act * facts.num_hidden_layers + 16 * layer_act  # checkpoints + one layer recomputed
    else:
        acts = 17 * layer_act * facts.num_hidden_layers  # ~34 bytes per token per hidden unit per layer
    logits = tokens * facts.vocab_size * 4 * 2  # fp32 logits and log-softmax of the micro-batch
    training_share = weights + grads + optim + acts + logits
    card = gpu_mem_gib * GIB
    p.lines.append(f"== memory per GPU ({gpu_mem_gib:g} GiB card, model {params / 1e9:.2f} B params)")
    if adapter is not None:
        p.lines.append(adapter.describe(params) + "; gradients and optimizer state for the adapter only")
    p.lines.append(f"policy weights {weights / GIB:.2f} GiB, gradients {grads / GIB:.2f}, optimizer {optim / GIB:.2f}")
    p.lines.append(f"activations (estimate) {acts / GIB:.2f} GiB + logits {logits / GIB:.2f} GiB for {tokens} tokens")
    vllm_share = 0.0
    if colocate:
        vllm_share = training.vllm_gpu_memory_utilization * card
        vllm_weights = (2 * params if adapter is None else adapter.base_weight_bytes) / tp  # QLoRA: 4-bit in vLLM
        kv_per_token = 2 * facts.num_hidden_layers * max(1, facts.num_key_value_heads // tp) * facts.head_dim * 2
        kv_bytes = vllm_share - vllm_weights - VLLM_OVERHEAD_GIB * GIB
        kv_tokens = int(max(0, kv_bytes) // kv_per_token)
        need_tokens = per_device * spg * tp * seq_len
        p.lines.append(
            f"vLLM share {vllm_share / GIB:.1f} GiB (vllm_gpu_memory_utilization {training.vllm_gpu_memory_utilization}): "
            f"weights {vllm_weights / GIB:.2f} GiB, KV cache {kv_tokens:,} tokens; one generation batch needs {need_tokens:,}"
        )
        if kv_tokens < need_tokens:
            p.errors.append(
                f"the KV cache holds {kv_tokens:,} tokens but one generation batch needs {need_tokens:,}: raise "
                "vllm_gpu_memory_utilization, raise TP, or lower per_device_train_batch_size / lengths"
            )
        max_len = training.vllm_max_model_length
        if max_len is not None and max_len < seq_len:
            p.errors.append(f"vllm_max_model_length {max_len} is below max prompt + max completion = {seq_len}")
        if tp > 1 and 2 * params + need_tokens * kv_per_token * tp + VLLM_OVERHEAD_GIB * GIB < vllm_share:
            p.warnings.append(f"TP {tp} on a model that fits one GPU's vLLM share: TP 1 is usually faster")
    total = training_share + vllm_share
    p.lines.append(
        f"total: training {training_share / GIB:.1f} GiB + vLLM {vllm_share / GIB:.1f} GiB = "
        f"{total / GIB:.1f} of {gpu_mem_gib:g} GiB"
    )
    if total > card:
        p.errors.append(
            f"training ({training_share / GIB:.1f} GiB) plus vLLM's share ({vllm_share / GIB:.1f} GiB) exceed the "
            f"{gpu_mem_gib:g} GiB card: lower vllm_gpu_memory_utilization or per_device_train_batch_size, enable "
            "gradient_checkpointing, or use a higher ZeRO stage"
        )
    if zero_stage == 3 and world > 1:
        zero2 = base_bytes + 14 * trainable / world + acts + logits + vllm_share
        if zero2 < 0.9 * card:
            p.warnings.append(
                "ZeRO-3 on a model that fits with ZeRO-2: zero2 avoids gathering weights every step (1.5B on 2x H200: "
                "5.2 vs 4.0 s/step, docs/PERFORMANCE.md); ACCELERATE=zero2"
            )
    return p


def runtime_plan(
    training, max_prompt_tokens: int | None, model_path: str, peft_config=None, quantization_config=None
) -> Plan | None:
    """The same checks on the real world size and cards (called by the trainer before it builds vLLM)."""
    import torch

    from .lora import trainer_adapter_plan

    if not torch.cuda.is_available():
        return None
    world = int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_WORLD_SIZE", min(world, torch.cuda.device_count())))
    zero = int(os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", 0) or 0)
    try:
        facts = model_facts(model_path)
    except KeyError:
        return None
    mem = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory / GIB
    return plan(
        training,
        max_prompt_tokens,
        facts,
        gpus_per_node=local,
        nodes=max(1, world // local),
        gpu_mem_gib=mem,
        zero_stage=zero,
        adapter=trainer_adapter_plan(facts, peft_config, quantization_config),
    )
