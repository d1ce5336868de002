"""Reward scoring speed on this machine: 1,024 MATH-style completions through `accuracy`, and the adversarial
corpus's worst item against its wall-clock bound. Results go to docs/PERFORMANCE.md by hand.

    python -m open_grpo.bench.reward_speed [--n 1024] [--timeout 5]
"""

import argparse
import os
import random
import time


def math_completions(n: int, seed: int = 0):
    rng = random.Random(seed)
    completions, golds = [], []
    for i in range(n):
        kind = i % 4
        a, b = rng.randint(1, 99), rng.randint(2, 99)
        gold = {0: str(a * b), 1: rf"\frac{{{a}}}{{{b}}}", 2: rf"{a}\sqrt{{{b}}}", 3: rf"{a}x^2 + {b}"}[kind]
        right = rng.random() < 0.5
        answer = (
            gold
            if right
            else {0: str(a * b + 1), 1: rf"\frac{{{b}}}{{{a}}}", 2: rf"{b}\sqrt{{{a}}}", 3: rf"{b}x^2 + {a}"}[kind]
        )
        reasoning = " ".join(f"Step {k}: we simplify the expression and check the result." for k in range(1, 12))
        completions.append(f"<think>{reasoning}</think>\n<answer>The answer is $\\boxed{{{answer}}}$</answer>")
        golds.append(f"The final result is $\\boxed{{{gold}}}$.")
    return completions, golds


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=1024)
    p.add_argument("--timeout", type=float, default=5.0)
    args = p.parse_args()

    from open_grpo.bench.verifier_corpus import ADVERSARIAL
    from open_grpo.rewards.accuracy import accuracy
    from open_grpo.rewards.verifier import get_pool

    pool = get_pool()
    print(f"{os.cpu_count()} CPU cores, {pool.size} verifier workers")
    completions, golds = math_completions(args.n)
    t = time.perf_counter()
    pool.warm_up()
    startup = time.perf_counter() - t
    t = time.perf_counter()
    values = accuracy(completions, solution=golds, timeout=args.timeout)
    dt = time.perf_counter() - t
    print(f"worker start-up: {startup:.2f} s")
    print(f"{args.n} completions: {dt:.2f} s = {args.n / dt:.0f} completions/s; mean reward {sum(v or 0 for v in values) / len(values):.3f}, "
          f"None {sum(v is None for v in values)}")  # fmt: skip
    worst, worst_item = 0.0, None
    for item in ADVERSARIAL:
        t = time.perf_counter()
        accuracy([item], solution=["3"], timeout=args.timeout)
        dt_item = time.perf_counter() - t
        if dt_item > worst:
            worst, worst_item = dt_item, item[:40]
    print(f"worst adversarial item: {worst:.2f} s (bound {args.timeout:.1f} s + worker restart): {worst_item!r}")


if __name__ == "__main__":
    main()
