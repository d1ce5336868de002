"""Where the colocated vLLM engine's core runs (`vllm_engine_process`): the recipe check's rule, and the engine's
choice at start-up (engine/colocated_engine.py). No torch, no vLLM.

- `in_process`: TRL 1.16's colocated engine. TRL builds `vllm.LLM` with the external launcher, which forces
  `VLLM_ENABLE_V1_MULTIPROCESSING=0`: scheduler, GPU worker and output processing all run in the training process,
  one after the other on every decode step.
- `own_process`: the engine core (scheduler + GPU worker) in a process of its own on this rank's GPU, vLLM's
  multiprocess front end (output processing) in the training process, overlapping with the engine's next step.
  Weights reach it through a staging buffer shared once by CUDA IPC (own_process.py). Tensor parallelism, sleep
  mode and quantized (QLoRA) bases stay on TRL's path: refused with a message.
- `auto`: `own_process` where it applies, `in_process` elsewhere (the reason is logged).
"""

from __future__ import annotations

from open_grpo.recipe.options import ENGINE_PROCESS_CHOICES as CHOICES


def own_process_blockers(*, colocate: bool, tp: int, sleep_mode: bool, quantized: bool) -> list[str]:
    """Why the engine core cannot run in its own process for these settings (empty: it can)."""
    blockers = []
    if not colocate:
        blockers.append("it applies to the colocated engine only (use_vllm: true, vllm_mode: colocate)")
    if tp > 1:
        blockers.append(
            f"vllm_tensor_parallel_size {tp} > 1: a TP group's engines are built by TRL's external launcher, one per "
            "rank, in the ranks' own processes"
        )
    if sleep_mode:
        blockers.append("vllm_enable_sleep_mode: the sleep/wake cycle is TRL's in-process path")
    if quantized:
        blockers.append(
            "a 4-/8-bit base (load_in_4bit / load_in_8bit): the staging buffer carries weights in the engine's dtype, "
            "quantized weights go through TRL's in-process path"
        )
    return blockers


def resolve(choice: str, *, colocate: bool, tp: int, sleep_mode: bool, quantized: bool) -> tuple[str, str]:
    """(`in_process` or `own_process`, why) for a choice; `own_process` where it cannot apply raises ValueError."""
    if choice not in CHOICES:
        raise ValueError(f"vllm_engine_process must be one of {', '.join(CHOICES)}, got {choice!r}")
    blockers = own_process_blockers(colocate=colocate, tp=tp, sleep_mode=sleep_mode, quantized=quantized)
    if choice == "in_process":
        return "in_process", "vllm_engine_process: in_process"
    if not blockers:
        return "own_process", f"vllm_engine_process: {choice}"
    if choice == "auto":
        return "in_process", "vllm_engine_process: auto -> in_process (" + "; ".join(blockers) + ")"
    raise ValueError(problem_text(blockers))


def problem_text(blockers: list[str]) -> str:
    return (
        "vllm_engine_process: own_process cannot run here: " + "; ".join(blockers) + ". Use 'in_process' (or 'auto', "
        "which falls back to it)"
    )


def recipe_problems(
    choice: str, *, use_vllm: bool, mode: str, tp: int, sleep_mode: bool, quantized: bool
) -> list[str]:
    """The recipe check's lines for `vllm_engine_process`."""
    if choice not in CHOICES:
        return [f"'vllm_engine_process' must be one of {', '.join(CHOICES)}, got {choice!r}"]
    if choice != "own_process":
        return []
    colocate = use_vllm and mode == "colocate"
    blockers = own_process_blockers(colocate=colocate, tp=tp, sleep_mode=sleep_mode, quantized=quantized)
    return [problem_text(blockers)] if blockers else []
