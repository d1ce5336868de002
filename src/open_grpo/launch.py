"""What a multi-node job script needs, derived in Python (shell never parses YAML): `open-grpo launch-args`.

Runs the preflight checks of `open-grpo check` for this layout (a bad TP for the node size stops the job here,
with the reason, before any GPU work) and prints shell assignments for `slurm/train.sbatch` to source:
OG_RECIPE_PATH, OG_OUTPUT_DIR, OG_NUM_NODES, OG_WORLD_SIZE, OG_TP, OG_MAIN_HOST, OG_MAIN_PORT and OG_LAUNCH (the
per-node `accelerate launch` command; each node fills in its rank from $SLURM_NODEID).
"""

from __future__ import annotations

import shlex

from . import shipped
from .config import RecipeError, load_recipe
from .preflight import ZERO_STAGE, PlanFailed, card_memory_gib, model_facts, plan


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
    """The job's derived values. Raises `RecipeError` for a recipe or usage problem, `PlanFailed` listing every
    problem of this layout."""
    cpu = accelerate == "cpu"
    overrides = list(extra) + (["--vllm_tensor_parallel_size", str(tp)] if tp else [])
    cfg = load_recipe(recipe, overrides, for_planning=True)
    training = cfg.training
    tp = tp or training.vllm_tensor_parallel_size
    where = f"{cfg.path} on {nodes} node(s) x {gpus_per_node} GPU(s), TP {tp}"
    if accelerate not in ZERO_STAGE:
        raise RecipeError(f"unknown accelerate config {accelerate!r}; known: {', '.join(ZERO_STAGE)}", where)
    if cpu and (nodes != 1 or training.use_vllm):
        raise RecipeError("ACCELERATE=cpu runs one process on one node without vLLM (recipes/demo.yaml)", where)
    procs_per_node = 1 if cpu else gpus_per_node
    if not cpu:
        result = plan(
            training,
            cfg.script.max_prompt_tokens,
            model_facts(cfg.model.model_name_or_path),
            gpus_per_node=gpus_per_node,
            nodes=nodes,
            gpu_mem_gib=gpu_mem_gib or card_memory_gib()[0],
            zero_stage=ZERO_STAGE[accelerate],
        )
        if result.errors:
            raise PlanFailed(result.errors, where)

    world = nodes * procs_per_node
    port = 29500 + job_id % 10000  # one port per job: two jobs on one node do not collide
    config_file = shipped.accelerate_config(accelerate)  # absolute: the job may start in another directory
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
