"""GRPO throughput on a GPU: plain TRL's defaults against open_grpo's, in one results file per card.

open-grpo bench                                   # trl-default and open_grpo, bench shape, 1 GPU
open-grpo bench --out DIR                         # the same, results under DIR
open-grpo bench --rows open_grpo,open_grpo-fold --baseline open_grpo   # one lever's own gain
open-grpo bench --gpus 4 --accelerate zero2       # data-parallel rows (per-GPU numbers)
"""

from open_grpo.errors import UsageError

NAME = "bench"
HELP = "throughput benchmark on a GPU (trl-default vs open_grpo)"


def add_arguments(p) -> None:
    from open_grpo.bench.driver import add_arguments as bench_arguments

    bench_arguments(p)


def run(args, rest: list[str]) -> int:
    from open_grpo.bench.driver import run as bench

    if rest:
        raise UsageError(f"unrecognized arguments: {' '.join(rest)}")
    return bench(args, args.argv[args.argv.index("bench") + 1 :])
