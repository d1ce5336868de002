"""Memory per GPU of a colocated GRPO run, as named terms in GiB (what `open-grpo check` prints and checks).

Training (TRL 1.16 GRPOTrainer, one process per GPU):
- policy_weights, gradients, optimizer_state: per parameter, sharded by the ZeRO stage. DeepSpeed (ZeRO 1-3, bf16)
  keeps bf16 weights and gradients and an fp32 master copy + Adam's two fp32 moments (12 bytes, the ZeRO paper's
  K = 12); without DeepSpeed, torch's AdamW keeps its moments in the weights' dtype and no master copy.
- reference_weights: a frozen copy of the policy when `beta > 0` (KL to the reference).
- reward_models: the weights of the recipe's reward models (rewards/reward_model.py), which TRL shards under
  ZeRO-3 / FSDP and copies to every GPU otherwise (in bf16 under DeepSpeed). Their forward pass runs in inference
  mode while scoring, between generation and the loss pass, one layer's working set at a time: not counted.
- activations: saved tensors of the decoder layers for one micro-batch of the longest sequences (prompt limit +
  completion limit). With gradient checkpointing, each layer keeps its input and one layer is recomputed at a time.
- lm_head: TRL 1.16 never builds the (tokens x vocab) logits: its fused LM head (trl/kernels/chunked_logprob.py)
  projects tiles of 4096 tokens x 32768 vocabulary rows and folds them into online log-softmax statistics. Its
  largest working set is the backward: the fp32 LM-head weight gradient (vocab x hidden, 4 bytes) and its copy in
  the weights' dtype, the fp32 hidden-state gradient (tokens x hidden) and its copy, and one tile.
- zero3_gathered: ZeRO-3 gathers each layer's weights (and the LM head) before use, one layer ahead.
- per_process_overhead: what torch's allocator never reports (CUDA context, NCCL buffers) plus allocator slack.
vLLM (colocated): `vllm_gpu_memory_utilization` x card memory, which vLLM sizes its weights, activations, CUDA
graphs and KV cache into; with `vllm_kv_cache: auto`, its weights + the KV cache of one generation batch + its
overhead (kv_cache_plan.py). An engine in its own process (`vllm_engine_process: own_process`) adds that process's
CUDA context and allocator (`engine_process_overhead`) and the trainer's weight-staging buffer (`weight_staging`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from open_grpo.planning.kv_cache_plan import (
    GIB,
    VLLM_OVERHEAD_GIB,
    engine_share_bytes,
    kv_bytes_per_token,
    kv_cache_bytes,
)
from open_grpo.recipe.engine_process import resolve as resolve_engine_process

DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4, "auto": 2, None: 4}  # transformers loads None as fp32
DEEPSPEED_OPTIMIZER_BYTES = 12  # fp32 master weights + Adam exp_avg + exp_avg_sq, per parameter
ADAM_MOMENTS = 2  # torch.optim.AdamW without DeepSpeed: two moments in the weights' dtype

# Saved-for-backward bytes per token of one Qwen2/Llama decoder layer in bf16 (sdpa attention): 20.7 x hidden +
# 8.0 x intermediate, counted with torch.autograd.graph.saved_tensors_hooks on transformers 5.17's Qwen2 layers of
# the 0.5B/1.5B/7B shapes (bench/measure_activations.py); rounded up. The fp32 RMSNorm internals, q/k/v with RoPE
# and sdpa's inputs and output make the hidden-size part, the gated MLP's four intermediate tensors the rest.
ACTIVATION_BYTES_PER_HIDDEN = 21
ACTIVATION_BYTES_PER_INTERMEDIATE = 8
CHECKPOINT_BYTES_PER_HIDDEN = 2  # gradient checkpointing: each layer's bf16 input
# trl/kernels/chunked_logprob.py: TOKEN_CHUNK_SIZE x trl.trainer.utils._CHUNKED_LOGPROB_CHUNK_SIZE, in bf16
LM_HEAD_TILE_BYTES = 4096 * 32768 * 2
LM_HEAD_GRAD_BYTES = 4 + 2  # per element of a gradient: the fp32 accumulator and its copy in the weights' dtype
ZERO3_LAYERS_GATHERED = 2  # the layer in use and the one prefetched
# What torch's allocator never reports, per process: the CUDA context and loaded kernels (0.5-1 GiB on current
# cards), NCCL communicators' buffers (NCCL_BUFFSIZE, 4 MiB, per channel and peer: up to ~1 GiB on 8 GPUs, for the
# data-parallel group and vLLM's TP group), and the caching allocator's slack between reserved and allocated memory
# as sequence lengths vary. An estimate, stated: the bench records `memory/peak_reserved_gib` and
# `memory/device_used_gib` per step (telemetry.py) to hold it against runs.
PER_PROCESS_OVERHEAD_GIB = 2.5
# An engine core in its own process: its CUDA context and loaded kernels (0.5-1 GiB) and its caching allocator's
# slack, outside vLLM's share (an estimate, like the one above; the bench records the engine process's reserved memory)
ENGINE_PROCESS_OVERHEAD_GIB = 1.5


@dataclass(frozen=True)
class EngineMemory:
    """How the colocated engine's memory is planned (the recipe keys of the same names)."""

    kv_cache: str = field(
        default="fraction", metadata={"help": "vllm_kv_cache: 'auto' (sized to the batch) or 'fraction'"}
    )
    process: str = field(default="in_process", metadata={"help": "vllm_engine_process, resolved: in_ or own_process"})
    staging_mib: int = field(default=1024, metadata={"help": "vllm_sync_chunk_mib: the own process's staging buffer"})


@dataclass
class MemoryPlan:
    """Named terms per GPU in bytes (`terms`), vLLM's share among them, and vLLM's KV-cache arithmetic."""

    terms: dict[str, float] = field(default_factory=dict)
    vllm_weights: float = 0.0
    kv_cache_tokens: int = 0
    generation_batch_tokens: int = 0
    kv_bytes_per_token: int = 0

    @property
    def total(self) -> float:
        return sum(self.terms.values())

    @property
    def training(self) -> float:
        return sum(v for k, v in self.terms.items() if k != "vllm_share")

    def gib(self) -> dict[str, float]:
        out = {name: round(value / GIB, 2) for name, value in self.terms.items()}
        out["total"] = round(self.total / GIB, 2)
        return out


def memory_plan(
    training,
    shape,
    *,
    world: int,
    tp: int,
    zero_stage: int,
    seq_len: int,
    sequences_per_engine: int,
    gpu_mem_gib: float,
    model_dtype: str | None,
    colocate: bool,
    adapter=None,
    reward_models=(),
    engine: EngineMemory | None = None,
) -> MemoryPlan:
    """The plan for one GPU of a `world`-GPU run of `training` (a GRPOConfig) on a model of `shape`. `adapter`: a
    `lora.AdapterPlan` for a LoRA run: gradients and optimizer state for the adapter only, the base frozen (bf16, or
    4/8-bit for QLoRA, in training and in vLLM), no reference copy (TRL disables the adapter for the reference).
    `reward_models`: `reward_model.RewardModelSize`s; `engine`: how vLLM's memory is sized and where its engine runs
    (TRL's fraction, in-process, by default)."""
    engine = engine or EngineMemory()
    params = shape.num_params
    trainable = params if adapter is None else adapter.trainable_params
    h, vocab = shape.hidden_size, shape.vocab_size
    weight_bytes = 2 if zero_stage else DTYPE_BYTES.get(model_dtype, 4)  # DeepSpeed bf16 casts the model to bf16
    shard = {0: (1, 1, 1), 1: (1, 1, world), 2: (1, world, world), 3: (world, world, world)}[zero_stage]
    optimizer_bytes = DEEPSPEED_OPTIMIZER_BYTES if zero_stage else ADAM_MOMENTS * weight_bytes
    tokens = training.per_device_train_batch_size * seq_len
    layer = tokens * (ACTIVATION_BYTES_PER_HIDDEN * h + ACTIVATION_BYTES_PER_INTERMEDIATE * shape.intermediate_size)
    if training.gradient_checkpointing:
        activations = tokens * CHECKPOINT_BYTES_PER_HIDDEN * h * shape.num_hidden_layers + layer
    else:
        activations = layer * shape.num_hidden_layers

    plan = MemoryPlan()
    t = plan.terms
    base_bytes = weight_bytes * params if adapter is None else adapter.base_weight_bytes + weight_bytes * trainable
    t["policy_weights"] = base_bytes / shard[0]
    t["gradients"] = weight_bytes * trainable / shard[1]
    t["optimizer_state"] = optimizer_bytes * trainable / shard[2]
    if training.beta and adapter is None:
        t["reference_weights"] = weight_bytes * params / shard[0]
    if reward_models:
        t["reward_models"] = sum((2 if zero_stage else m.bytes_per_param) * m.params for m in reward_models) / shard[0]
    t["activations"] = activations
    t["lm_head"] = LM_HEAD_GRAD_BYTES * (vocab * h + tokens * h) + LM_HEAD_TILE_BYTES
    if zero_stage == 3:
        layer_params = (params - vocab * h * (1 if shape.tie_word_embeddings else 2)) / shape.num_hidden_layers
        t["zero3_gathered"] = weight_bytes * (ZERO3_LAYERS_GATHERED * layer_params + vocab * h)
    t["per_process_overhead"] = PER_PROCESS_OVERHEAD_GIB * GIB
    if colocate:
        plan.vllm_weights = (2 * params if adapter is None else adapter.base_weight_bytes) / tp
        plan.kv_bytes_per_token = kv_bytes_per_token(shape, tp)
        if engine.kv_cache == "auto":
            max_model_len = training.vllm_max_model_length or seq_len
            kv_bytes = kv_cache_bytes(shape, sequences_per_engine, max_model_len, tp)
            share = engine_share_bytes(plan.vllm_weights, kv_bytes)
        else:
            share = training.vllm_gpu_memory_utilization * gpu_mem_gib * GIB
            kv_bytes = share - plan.vllm_weights - VLLM_OVERHEAD_GIB * GIB
        t["vllm_share"] = share
        plan.kv_cache_tokens = int(max(0, kv_bytes) // plan.kv_bytes_per_token)
        plan.generation_batch_tokens = sequences_per_engine * seq_len
        if engine.process == "own_process":
            t["engine_process_overhead"] = ENGINE_PROCESS_OVERHEAD_GIB * GIB
            t["weight_staging"] = min(max(engine.staging_mib, 1) * 2**20, 2 * params)  # engine/staging.py
    return plan


def fits_one_gpu(plan: MemoryPlan, shape, tp: int) -> bool:
    """Whether the model and its share of the generation batch's KV cache would fit one GPU's vLLM share at TP 1."""
    kv_bytes_per_token = 2 * shape.num_hidden_layers * shape.num_key_value_heads * shape.head_size * 2
    need = 2 * shape.num_params + plan.generation_batch_tokens // tp * kv_bytes_per_token + VLLM_OVERHEAD_GIB * GIB
    return need < plan.terms.get("vllm_share", 0.0)


def describe(plan: MemoryPlan) -> list[str]:
    """One line per term, for the console."""
    return [f"  {name:<24}{value / GIB:>7.2f} GiB" for name, value in plan.terms.items()]


def quantized_base(model_args) -> bool:
    return bool(model_args.use_peft and (model_args.load_in_4bit or model_args.load_in_8bit))


def engine_memory(training, quantized: bool) -> EngineMemory:
    """The engine's memory options of a recipe's training options (OpenGRPOConfig), its process resolved."""
    colocate = training.use_vllm and training.vllm_mode == "colocate"
    try:
        process, _ = resolve_engine_process(training.vllm_engine_process, colocate=colocate, quantized=quantized,
                                            tp=training.vllm_tensor_parallel_size,
                                            sleep_mode=training.vllm_enable_sleep_mode)  # fmt: skip
    except ValueError:  # reported by the recipe check
        process = "in_process"
    return EngineMemory(kv_cache=training.vllm_kv_cache, process=process, staging_mib=training.vllm_sync_chunk_mib)
