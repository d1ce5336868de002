"""GRPO throughput on a GPU: plain TRL's defaults against open_grpo's, in one results file per card.

open-grpo bench                                   # trl-default and open_grpo, bench shape, 1 GPU
open-grpo bench --rows trl-default,no-gc,open_grpo --steps 8 --out DIR
open-grpo bench --gpus 2 --accelerate zero2       # data-parallel rows (per-GPU numbers)
"""

NAME = "bench"
HELP = "throughput benchmark on a GPU (trl-default vs open_grpo)"


def add_arguments(p) -> None:
    from ..bench.driver import add_arguments as bench_arguments

    bench_arguments(p)


def run(args, rest: list[str]) -> int:
    import sys

    from ..bench.driver import run as bench

    if rest:
        print(f"open-grpo bench: unrecognized arguments: {' '.join(rest)}", file=sys.stderr)
        return 2
    return bench(args, args.argv[args.argv.index("bench") + 1 :])
