"""`open-grpo launch-args`: everything a multi-node job script needs, derived in Python (shell never parses YAML).

    open-grpo launch-args RECIPE --nodes 2 --gpus-per-node 8 [--tp 2] [--accelerate zero3] \
        --main-host node01 [--job-id 1234] [-- extra trainer args]

Runs the preflight checks of `open-grpo check` for this layout (a bad TP for the node size stops the job here,
with the reason, before any GPU work) and prints shell assignments for `slurm/train.sbatch` to source:
OG_RECIPE_PATH, OG_OUTPUT_DIR, OG_NUM_NODES, OG_WORLD_SIZE, OG_TP, OG_MAIN_HOST, OG_MAIN_PORT and OG_LAUNCH (the
per-node `accelerate launch` command; each node fills in its rank from $SLURM_NODEID).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from .config import RecipeError, load_recipe
from .preflight import ZERO_STAGE, model_facts, plan


def gpu_memory_gib() -> float:
    """The first GPU's memory from nvidia-smi (no CUDA context is created); 80 if it cannot tell."""
    if shutil.which("nvidia-smi"):
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"], capture_output=True, text=True
        )
        if out.returncode == 0 and out.stdout.strip():
            return float(out.stdout.split()[0]) / 1024
    return 80.0


def launch_args(
    recipe: str,
    nodes: int,
    gpus_per_node: int,
    accelerate: str,
    main_host: str,
    tp: int | None = None,
    job_id: int = 0,
    extra: list[str] | tuple[str, ...] = (),
    gpu_mem_gib: float | None = None,
) -> dict[str, str]:
    """The job's derived values. Raises `RecipeError` listing every problem of this layout."""
    cpu = accelerate == "cpu"
    overrides = list(extra) + (["--vllm_tensor_parallel_size", str(tp)] if tp else [])
    cfg = load_recipe(recipe, overrides, for_planning=True)
    training = cfg.training
    tp = tp or training.vllm_tensor_parallel_size
    problems = []
    if accelerate not in ZERO_STAGE:
        problems.append(f"unknown accelerate config {accelerate!r}; known: {', '.join(ZERO_STAGE)}")
    if cpu and (nodes != 1 or training.use_vllm):
        problems.append("ACCELERATE=cpu runs one process on one node without vLLM (recipes/demo.yaml)")
    procs_per_node = 1 if cpu else gpus_per_node
    if not cpu and accelerate in ZERO_STAGE:
        result = plan(
            training,
            cfg.script.max_prompt_tokens,
            model_facts(cfg.model.model_name_or_path),
            gpus_per_node=gpus_per_node,
            nodes=nodes,
            gpu_mem_gib=gpu_mem_gib or gpu_memory_gib(),
            zero_stage=ZERO_STAGE[accelerate],
        )
        problems += result.errors
    if problems:
        raise RecipeError(problems, f"{cfg.path} on {nodes} node(s) x {gpus_per_node} GPU(s), TP {tp}")

    world = nodes * procs_per_node
    port = 29500 + job_id % 10000  # one port per job: two jobs on one node do not collide
    config_file = Path("accelerate_configs") / f"{accelerate}.yaml"
    launch = ["accelerate", "launch", "--config_file", str(config_file), "--num_machines", str(nodes),
              "--num_processes", str(world), "--machine_rank", "$SLURM_NODEID", "--main_process_ip", main_host,
              "--main_process_port", str(port)]  # fmt: skip
    if ZERO_STAGE.get(accelerate):  # DeepSpeed: each node starts its own ranks
        launch += ["--deepspeed_multinode_launcher", "standard"]
    if nodes > 1:
        launch += ["--rdzv_backend", "static", "--same_network"]
    launch += ["-m", "open_grpo.train", "--config", str(cfg.path)]
    if training.use_vllm:
        launch += ["--vllm_tensor_parallel_size", str(tp)]
    launch += list(extra)
    # every word quoted for the node's shell, except the rank it fills in
    command = " ".join(w if w == "$SLURM_NODEID" else shlex.quote(w) for w in launch)
    return {
        "OG_RECIPE_PATH": str(cfg.path),
        "OG_OUTPUT_DIR": str(training.output_dir),
        "OG_NUM_NODES": str(nodes),
        "OG_WORLD_SIZE": str(world),
        "OG_TP": str(tp),
        "OG_MAIN_HOST": main_host,
        "OG_MAIN_PORT": str(port),
        "OG_LAUNCH": command,
    }


def main(argv: list[str] | None = None) -> int:
    import argparse

    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(prog="open-grpo launch-args", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("recipe")
    p.add_argument("--nodes", type=int, default=int(os.environ.get("SLURM_JOB_NUM_NODES", 1)))
    p.add_argument("--gpus-per-node", type=int, default=8)
    p.add_argument("--tp", type=int, default=None)
    p.add_argument("--accelerate", default="zero3")
    p.add_argument("--main-host", default="127.0.0.1")
    p.add_argument("--job-id", type=int, default=int(os.environ.get("SLURM_JOB_ID", 0)))
    p.add_argument("--gpu-mem-gib", type=float, default=None)
    args = p.parse_args(argv)
    try:
        values = launch_args(args.recipe, args.nodes, args.gpus_per_node, args.accelerate, args.main_host, args.tp,
                             args.job_id, extra, args.gpu_mem_gib)  # fmt: skip
    except RecipeError as e:
        print(f"open-grpo launch-args: {e}", file=sys.stderr)
        return 1
    for key, value in values.items():
        print(f"{key}={shlex.quote(value)}")
    return 0
