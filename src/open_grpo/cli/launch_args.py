"""Everything a multi-node job script needs, derived in Python: `open-grpo launch-args`.

    open-grpo launch-args RECIPE --nodes 2 --gpus-per-node 8 [--tp 2] [--accelerate zero3] \
        --main-host node01 [--job-id 1234] [-- extra trainer args]

Runs the preflight checks of `open-grpo check` for this layout and prints shell assignments (OG_*) for
`slurm/train.sbatch` to `eval`; notes (what was assumed, warnings) go to stderr. Inside a job (SLURM_JOB_ID set)
the GPUs per node and card memory are this node's real ones, and a --gpus-per-node that differs stops the job.
A layout that does not fit exits 1 with the reasons on stderr; a recipe or usage error exits 2.
"""

import os
import shlex
import sys

NAME = "launch-args"
HELP = "shell assignments for a job script (slurm/train.sbatch): layout, port, launch command"


def add_arguments(p) -> None:
    p.add_argument("recipe", help="a recipe name (open-grpo recipes) or a path to a recipe YAML")
    p.add_argument("--nodes", type=int, default=int(os.environ.get("SLURM_JOB_NUM_NODES", 1)),
                   help="nodes in the job (default: $SLURM_JOB_NUM_NODES, else 1)")  # fmt: skip
    p.add_argument(
        "--gpus-per-node", type=int, default=None, help="default: this node's GPUs in a job, else 8 (said so)"
    )
    p.add_argument("--tp", type=int, default=None, help="vllm_tensor_parallel_size (default: the recipe's)")
    p.add_argument("--accelerate", default="zero3", help="accelerate config name")
    p.add_argument("--main-host", default="127.0.0.1", help="the first node's address, where rank 0 listens")
    p.add_argument("--job-id", type=int, default=int(os.environ.get("SLURM_JOB_ID", 0)),
                   help="the job's id, from which the rendezvous port is derived (default: $SLURM_JOB_ID)")  # fmt: skip
    p.add_argument("--gpu-mem-gib", type=float, default=None, help="card memory (default: this node's, else 80)")


def run(args, extra: list[str]) -> int:
    from open_grpo.errors import EXIT_CHECK_FAILED, EXIT_OK
    from open_grpo.planning.launch import launch_args
    from open_grpo.planning.preflight import PlanFailed

    try:
        values, notes = launch_args(
            args.recipe,
            args.nodes,
            args.gpus_per_node,
            args.accelerate,
            args.main_host,
            args.tp,
            args.job_id,
            extra,
            args.gpu_mem_gib,
        )
    except PlanFailed as e:
        print(f"open-grpo launch-args: {e}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    for note in notes:
        print(f"open-grpo launch-args: {note}", file=sys.stderr)
    for key, value in values.items():
        print(f"{key}={shlex.quote(value)}")
    return EXIT_OK
