"""What a multi-node job script needs, derived in Python (shell never parses YAML): `open-grpo launch-args`.

Runs the preflight checks of `open-grpo check` for this layout (a bad TP for the node size stops the job here,
with the reason, before any GPU work), refuses an output_dir another launch holds (runs/lock.py), and prints shell
assignments for `slurm/train.sbatch` to source: OG_RECIPE_PATH, OG_OUTPUT_DIR, OG_NUM_NODES, OG_GPUS_PER_NODE,
OG_WORLD_SIZE, OG_TP, OG_MAIN_HOST, OG_MAIN_PORT (0 on one node: accelerate picks a free one) and OG_LAUNCH (the
per-node `accelerate launch` command; each node fills in its rank from $SLURM_NODEID).

Inside a job (SLURM_JOB_ID set) the plan uses this node's real GPUs: their count must match the layout and their
memory is the card's, with no default. Outside a job it plans for --gpus-per-node (default 8) cards of
--gpu-mem-gib (default: this machine's, else 80 GiB), and says so.
"""

from __future__ import annotations

import os
import shlex
import socket

from open_grpo.errors import RecipeError
from open_grpo.planning import gpus as machine_gpus
from open_grpo.planning.preflight import DEEPSPEED_CONFIGS, ZERO_STAGE, PlanFailed, layout_problems
from open_grpo.planning.recipe_plan import plan_recipe
from open_grpo.recipe import load_recipe, shipped
from open_grpo.runs import lock

# The rendezvous port of a multi-node job, where every node must be told the same port in advance: derived from
# the job id inside 20000-28999, below Linux's ephemeral range (32768-60999, where the kernel hands out the ports of
# outgoing connections, so a port there may already be taken) and clear of the well-known ports (< 1024), torch's
# defaults (29400, 29500) and the services a compute node may run in that range. Job ids equal modulo 9000 would
# get the same port: launch-args runs on the first node, where rank 0 listens, and moves on to the next port free
# there, so jobs sharing that node differ. A one-node job gets port 0: accelerate picks a free port itself.
PORT_BASE, PORT_SPAN = 20000, 9000
PORTS_IN_USE_ELSEWHERE = {24007, 24008, 27017, 27018, 27019}  # GlusterFS, MongoDB
PICK_A_FREE_PORT = 0  # accelerate launch --main_process_port 0 (one node only: the other nodes could not know it)


def port_is_free(port: int) -> bool:
    """Whether a listener could bind `port` on every interface of this host (what rank 0's TCPStore does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("", port))
        except OSError:
            return False
    return True


def is_this_host(host: str) -> bool:
    names = {socket.gethostname(), socket.gethostname().split(".")[0], socket.getfqdn(), "localhost", "127.0.0.1"}
    return host in names or host.split(".")[0] in names


def main_port(job_id: int, nodes: int = 2, main_host: str = "", is_free=port_is_free) -> int:
    """The rendezvous port (see PORT_BASE); free on the main host where that is this host."""
    if nodes == 1:
        return PICK_A_FREE_PORT
    check = is_this_host(main_host)
    offset = job_id % PORT_SPAN
    for step in range(PORT_SPAN):
        port = PORT_BASE + (offset + step) % PORT_SPAN
        if port not in PORTS_IN_USE_ELSEWHERE and (not check or is_free(port)):
            return port
    raise PlanFailed([f"no free port in {PORT_BASE}-{PORT_BASE + PORT_SPAN - 1} on {main_host}"], main_host)


def node_gpus(gpus_per_node: int | None, gpu_mem_gib: float | None, in_job: bool, where: str):
    """(GPUs per node, card memory in GiB, notes): inside a job from this node's GPUs, checked against the layout;
    outside, the given values or the documented defaults, with a note saying which."""
    if in_job:
        gpus = machine_gpus.visible_gpus()
        if not gpus:
            raise PlanFailed(["no GPU is visible on this node (nvidia-smi lists none): submit with GPUs "
                              "(sbatch --gpus-per-node=N), or run the CPU demo with ACCELERATE=cpu"], where)  # fmt: skip
        if gpus_per_node is not None and gpus_per_node != len(gpus):
            raise PlanFailed([f"the layout asks for {gpus_per_node} GPUs per node but this node has {len(gpus)} "
                              f"visible ({gpus[0][0]}): submit with --gpus-per-node={len(gpus)}, or ask SLURM for "
                              f"{gpus_per_node} (sbatch --gpus-per-node={gpus_per_node})"], where)  # fmt: skip
        return len(gpus), gpu_mem_gib or gpus[0][1], []
    notes = []
    if gpus_per_node is None:
        gpus_per_node = machine_gpus.DEFAULT_GPUS_PER_NODE
        notes.append(f"not in a job: planned for {gpus_per_node} GPUs per node, the default (set --gpus-per-node)")
    if gpu_mem_gib is None:
        gpu_mem_gib, source = machine_gpus.card_memory_gib()
        notes.append(f"card memory {gpu_mem_gib:g} GiB: {source}")
    return gpus_per_node, gpu_mem_gib, notes


def launch_args(
    recipe: str,
    nodes: int,
    gpus_per_node: int | None,
    accelerate: str,
    main_host: str,
    tp: int | None = None,
    job_id: int = 0,
    extra: list[str] | tuple[str, ...] = (),
    gpu_mem_gib: float | None = None,
    environ=os.environ,
) -> tuple[dict[str, str], list[str]]:
    """(the job's derived values, notes for the log). Raises `RecipeError` for a recipe or usage problem,
    `PlanFailed` listing every problem of this layout."""
    cpu = accelerate == "cpu"
    problems = layout_problems(gpus_per_node if gpus_per_node is not None else 1, nodes)
    if tp is not None and tp < 1:
        problems.append(f"--tp must be at least 1, got {tp}")
    if problems:
        raise RecipeError(problems)
    overrides = list(extra) + (["--vllm_tensor_parallel_size", str(tp)] if tp else [])
    if accelerate not in ZERO_STAGE:
        raise RecipeError(f"unknown accelerate config {accelerate!r}; known: {', '.join(ZERO_STAGE)}")
    notes = []
    procs_per_node = 1
    if not cpu:  # the GPUs first: the recipe is checked for the world size they make
        where = f"{recipe} on {nodes} node(s)"
        procs_per_node, gpu_mem_gib, notes = node_gpus(gpus_per_node, gpu_mem_gib, "SLURM_JOB_ID" in environ, where)
    cfg = load_recipe(recipe, overrides, world_size=nodes * procs_per_node)
    training = cfg.training
    tp = tp or training.vllm_tensor_parallel_size
    where = f"{cfg.path} on {nodes} node(s), TP {tp}"
    config_file = shipped.accelerate_config(accelerate)  # absolute: the job may start in another directory
    if cpu and (nodes != 1 or training.use_vllm):
        raise RecipeError("ACCELERATE=cpu runs one process on one node without vLLM (recipes/demo.yaml)", where)
    in_use = lock.launch_problem(training.output_dir)  # the same sbatch submitted twice: stop before any node starts
    if in_use:
        raise RecipeError(in_use)
    if not cpu:
        result = plan_recipe(cfg, gpus_per_node=procs_per_node, nodes=nodes, gpu_mem_gib=gpu_mem_gib,
                             zero_stage=ZERO_STAGE[accelerate])  # fmt: skip
        if result.errors:
            raise PlanFailed(result.errors, f"{where} x {procs_per_node} GPU(s)")
        notes += [f"warning: {w}" for w in result.warnings]
        colocated = training.use_vllm and training.vllm_mode == "colocate"
        if nodes > 1 and colocated and not environ.get("GLOO_SOCKET_IFNAME"):
            notes.append("warning: GLOO_SOCKET_IFNAME is not set: colocated vLLM joins every rank of every node in "
                         "one gloo group, which otherwise uses the interface of the host name (slurm/README.md)")  # fmt: skip

    world = nodes * procs_per_node
    port = main_port(job_id, nodes, main_host)
    launch = ["accelerate", "launch", "--config_file", str(config_file), "--num_machines", str(nodes),
              "--num_processes", str(world), "--machine_rank", "$SLURM_NODEID", "--main_process_ip", main_host,
              "--main_process_port", str(port)]  # fmt: skip
    if accelerate in DEEPSPEED_CONFIGS:  # DeepSpeed: each node starts its own ranks
        launch += ["--deepspeed_multinode_launcher", "standard"]
    if nodes > 1:
        launch += ["--rdzv_backend", "static", "--same_network"]
    launch += ["-m", "open_grpo.train", "--config", str(cfg.path)]
    if training.use_vllm:
        launch += ["--vllm_tensor_parallel_size", str(tp)]
    launch += list(extra)
    # every word quoted for the node's shell, except the rank it fills in
    command = " ".join(w if w == "$SLURM_NODEID" else shlex.quote(w) for w in launch)
    values = {
        "OG_RECIPE_PATH": str(cfg.path),
        "OG_OUTPUT_DIR": str(training.output_dir),
        "OG_NUM_NODES": str(nodes),
        "OG_GPUS_PER_NODE": str(0 if cpu else procs_per_node),
        "OG_WORLD_SIZE": str(world),
        "OG_TP": str(tp),
        "OG_MAIN_HOST": main_host,
        "OG_MAIN_PORT": str(port),
        "OG_LAUNCH": command,
    }
    return values, notes
