"""How the colocated vLLM engine all-reduces when tensor parallelism is on (`vllm_tensor_parallel_size > 1`).

For TP > 1 on Hopper/Blackwell, vLLM 0.26 compiles a fused all-reduce + RMSNorm (`pass_config.fuse_allreduce_rms`)
whose FlashInfer backend on one node is `mnnvl`, which needs NVLink multicast. Where multicast is off
(`TORCH_SYMM_MEM_DISABLE_MULTICAST=1`, `NCCL_NVLS_ENABLE=0`, as many clusters set) or missing, that backend's first
use crashes with an illegal memory access (or hangs) in vLLM's memory-profiling forward.

`vllm_allreduce_fusion` picks what to do:
- `auto` (default): `off` where NVLink multicast is off or missing, and on more than one node; elsewhere vLLM's own
  choice;
- `off`: no fused all-reduce (vLLM's custom all-reduce or NCCL, then RMSNorm);
- `trtllm`: keep the fusion on FlashInfer's IPC backend (`VLLM_FLASHINFER_ALLREDUCE_BACKEND=trtllm`, one node only);
- `vllm`: change nothing.
Colocated, vLLM's world is every training rank (external launcher): on several nodes it is a multi-node world even
though each TP group stays on one node, and vLLM 0.26 picks its FlashInfer all-reduce backend from that: `trtllm`
raises for a multi-node world and vLLM's own choice changes backend. So `auto` turns the fusion off there, and
`trtllm` on several nodes is a preflight error.
docs/PERFORMANCE.md has the TP=1/TP=2 generation times behind the default.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping

from open_grpo.recipe.options import ALLREDUCE_FUSION_CHOICES

BACKEND_ENV = "VLLM_FLASHINFER_ALLREDUCE_BACKEND"
CU_DEVICE_ATTRIBUTE_MULTICAST_SUPPORTED = 132

# Variables with which a site turns NVLink multicast off, and the values that mean "off".
_MULTICAST_OFF = {
    "TORCH_SYMM_MEM_DISABLE_MULTICAST": ("1", "true", "yes", "on"),
    "NCCL_NVLS_ENABLE": ("0", "false", "no", "off"),
    "NVSHMEM_DISABLE_NVLS": ("1", "true", "yes", "on"),
}


def device_multicast_supported(device: int = 0) -> bool | None:
    """The driver's CU_DEVICE_ATTRIBUTE_MULTICAST_SUPPORTED for `device` (None where it cannot be read).

    Only reads an attribute: it never creates a multicast object."""
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
        dev, value = ctypes.c_int(), ctypes.c_int()
        if libcuda.cuInit(0) != 0 or libcuda.cuDeviceGet(ctypes.byref(dev), device) != 0:
            return None
        if libcuda.cuDeviceGetAttribute(ctypes.byref(value), CU_DEVICE_ATTRIBUTE_MULTICAST_SUPPORTED, dev) != 0:
            return None
        return bool(value.value)
    except (OSError, AttributeError):
        return None


def multicast_unavailable(environ: Mapping[str, str], device_supported: bool | None) -> str | None:
    """Why NVLink multicast cannot be used here, or None where nothing says so."""
    for var, off in _MULTICAST_OFF.items():
        if environ.get(var, "").strip().lower() in off:
            return f"{var}={environ[var]}"
    if device_supported is False:
        return "the GPU reports no multicast support"
    return None


def multi_node_problem(tp_size: int, choice: str, nodes: int) -> str | None:
    """Why `choice` cannot run colocated with TP `tp_size` on `nodes` nodes, or None."""
    if choice == "trtllm" and tp_size > 1 and nodes > 1:
        return (
            f"vllm_allreduce_fusion: trtllm is FlashInfer's single-node backend, and colocated vLLM's world spans all "
            f"{nodes} nodes (vLLM 0.26 raises there): use 'auto' (turns the fusion off on several nodes) or 'off'"
        )
    return None


def nodes_from_env(environ: Mapping[str, str]) -> int:
    """How many nodes this launch spans, from the launcher's WORLD_SIZE and LOCAL_WORLD_SIZE (1 when unset)."""
    world = int(environ.get("WORLD_SIZE", 1) or 1)
    local = int(environ.get("LOCAL_WORLD_SIZE", world) or world)
    return max(1, -(-world // max(1, local)))


def allreduce_settings(
    tp_size: int,
    choice: str,
    environ: Mapping[str, str],
    device_supported: bool | None = None,
    nodes: int = 1,
) -> tuple[dict[str, str], dict, str | None]:
    """(environment variables to set, vLLM engine kwargs to merge, why) for the colocated engine on `nodes` nodes."""
    if choice not in ALLREDUCE_FUSION_CHOICES:
        raise ValueError(f"vllm_allreduce_fusion must be one of {', '.join(ALLREDUCE_FUSION_CHOICES)}, got {choice!r}")
    if tp_size <= 1 or choice == "vllm":
        return {}, {}, None
    problem = multi_node_problem(tp_size, choice, nodes)
    if problem:
        raise ValueError(problem)
    if choice == "auto":
        if BACKEND_ENV in environ:
            return {}, {}, None  # the user chose a FlashInfer backend: theirs to keep
        reason = multicast_unavailable(environ, device_supported)
        if reason is not None:
            choice, why = "off", f"NVLink multicast is unavailable ({reason})"
        elif nodes > 1:
            choice, why = "off", f"colocated vLLM's world spans {nodes} nodes"
        else:
            return {}, {}, None
    else:
        why = f"vllm_allreduce_fusion: {choice}"
    if choice == "trtllm":
        return {BACKEND_ENV: "trtllm"}, {}, f"{why}: fused all-reduce on FlashInfer's trtllm (IPC) backend"
    engine = {"compilation_config": {"pass_config": {"fuse_allreduce_rms": False}}}
    return {}, engine, f"{why}: fused all-reduce + RMSNorm off"


def merge_engine_kwargs(user: dict, ours: dict) -> dict:
    """`ours` under `user`: nested dicts merge, and a value the user set wins."""
    out = dict(ours)
    for key, value in user.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_engine_kwargs(value, out[key])
        else:
            out[key] = value
    return out


def apply(tp_size: int, choice: str, engine_kwargs: dict, environ=os.environ) -> tuple[dict, str | None]:
    """Set the variables in `environ` and return (engine kwargs, why) for this process's colocated engine."""
    device_supported = None
    if tp_size > 1 and choice == "auto" and BACKEND_ENV not in environ:
        device_supported = device_multicast_supported(int(environ.get("LOCAL_RANK", 0)))
    env, engine, why = allreduce_settings(tp_size, choice, environ, device_supported, nodes_from_env(environ))
    environ.update(env)
    return merge_engine_kwargs(engine_kwargs, engine), why
