"""The GPUs this machine shows, asked of nvidia-smi (no CUDA context is created), and the documented defaults used
where none is visible: what `open-grpo check` and `launch-args` plan for."""

from __future__ import annotations

import os
import shutil
import subprocess

# Planning outside a job with no GPU visible: an 80 GB card (A100/H100), the common case, said so in the output.
DEFAULT_GPU_MEM_GIB = 80.0
DEFAULT_GPUS_PER_NODE = 8  # the same, for the GPU count per node


def visible_gpus() -> list[tuple[str, float]]:
    """(name, memory in GiB) of each GPU this process may use, from nvidia-smi (no CUDA context is created), limited
    to CUDA_VISIBLE_DEVICES where the job's launcher set it. Empty where none is visible."""
    if not shutil.which("nvidia-smi"):
        return []
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        return []
    gpus = []
    for line in out.stdout.splitlines():
        if "," in line:
            name, mib = line.rsplit(",", 1)
            gpus.append((name.strip(), float(mib) / 1024))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        gpus = gpus[: len([d for d in visible.split(",") if d.strip()])]
    return gpus


def card_memory_gib() -> tuple[float, str]:
    """(memory of this machine's first GPU in GiB, where that number comes from); with no GPU visible, the documented
    default and a note saying so."""
    gpus = visible_gpus()
    if gpus:
        return gpus[0][1], f"this machine's {gpus[0][0]}"
    return (
        DEFAULT_GPU_MEM_GIB,
        "the default: no GPU visible here (set --gpu-mem-gib for your cards)",
    )
