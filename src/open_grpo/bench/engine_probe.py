"""The colocated engine in the training process (TRL's) against in a process of its own, in one process on one GPU.

    python -m open_grpo.bench.engine_probe --out DIR [--model random:1.5b] [--steps 4]

Both engines are built the way the trainer builds them (engine/probe_engines.py: TRL's `VLLMGeneration`, the
recipes' output settings, `vllm_kv_cache: auto`, so both fit one card beside the policy: planned at ~5 GiB each for 1.5B), the
engine in its own process first, and both stay built (vLLM 0.26's `LLM` has no shutdown of its own: an engine is
freed when collected; the one in its own process by its client's shutdown, called at the end). Then, in this order:

1. correctness: greedy (temperature 0) completions of a few prompts, one request per call (the same batch in both
   engines, so the same kernels), from each engine; then the policy's weights perturbed (seeded) and pushed into
   both (in-process: TRL's per-parameter `load_weights`, then open_grpo's 1 GiB chunks; own process: the staging
   buffer), three times each, timed; then greedy again. Passes when the own process's completions equal the
   in-process ones before and after the push and the push changed them (the weights arrived);
2. speed: the bench shape (16 sequences x 1024 tokens, `ignore_eos`, TRL's sampling), one warm-up call per engine,
   then `--steps` calls per engine interleaved A B A B: seconds per call, ms per decode step, and each call's engine
   steps (median, max, steps over 0.25 s: vLLM issue #48229's frozen steps would show here);
3. memory: this process's reserved memory added by the in-process engine, the engine process's reserved memory,
   the card's used memory at each stage.

Writes DIR/probe.json and prints a table last. Exit 1 when the correctness check fails.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import sys
import time
import traceback
from pathlib import Path

ENGINES = ("own_process", "in_process")  # build order; calls alternate in this order
CHECK_PROMPTS = 4
CHECK_TOKENS = 32
PUSHES = 3
PERTURB_SCALE = 0.5  # times each weight tensor's std, seeded: changes a random model's greedy completions


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m open_grpo.bench.engine_probe", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--out", required=True, help="folder for probe.json")
    p.add_argument("--model", default="random:1.5b", help="random:<shape>, a local path or a hub id in the cache")
    p.add_argument("--steps", type=int, default=4, help="measured generate calls per engine (after one warm-up)")
    p.add_argument("--sequences", type=int, default=16, help="sequences per generate call (the bench: 16 per GPU)")
    p.add_argument("--prompts", type=int, default=2, help="distinct prompts, each repeated sequences/prompts times")
    p.add_argument("--tokens", type=int, default=1024, help="completion tokens per sequence (ignore_eos)")
    p.add_argument("--prompt-tokens", type=int, default=256, help="tokens per prompt (random ids)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    problems = [f"--{k.replace('_', '-')} must be >= 1, got {v}" for k, v in vars(args).items()
                if k in ("steps", "sequences", "prompts", "tokens", "prompt_tokens") and v < 1]  # fmt: skip
    if args.sequences % args.prompts:
        problems.append(f"--sequences {args.sequences} must be a multiple of --prompts {args.prompts}")
    if problems:
        p.error("; ".join(problems))
    return args


def make_prompts(n: int, copies: int, tokens: int, seed: int, low: int = 300, high: int = 100_000) -> list[list[int]]:
    """`n` prompts of `tokens` random ids, each `copies` times in a row (TRL's layout of a prompt's group)."""
    rng = random.Random(seed)
    prompts = [[rng.randrange(low, high) for _ in range(tokens)] for _ in range(n)]
    return [p for p in prompts for _ in range(copies)]


def first_difference(a: list[list[int]], b: list[list[int]]) -> list | None:
    """[prompt, token position] of the first token where two lists of completions differ (None: identical)."""
    for i, (x, y) in enumerate(zip(a, b)):
        for j, (s, t) in enumerate(zip(x, y)):
            if s != t:
                return [i, j]
        if len(x) != len(y):
            return [i, min(len(x), len(y))]
    return None if len(a) == len(b) else [min(len(a), len(b)), 0]


def max_difference(tokens_a, logprobs_a, logprobs_b, tokens_b) -> float | None:
    """The largest |logprob a - logprob b| over the positions before each prompt's first differing token."""
    diffs = []
    for ta, la, lb, tb in zip(tokens_a, logprobs_a, logprobs_b, tokens_b):
        for x, y, u, v in zip(ta, tb, la, lb):
            if x != y:
                break
            if u is not None and v is not None:
                diffs.append(abs(u - v))
    return max(diffs) if diffs else None


def correctness(engines: dict, perturb, prompts: list[list[int]]) -> dict:
    """Greedy completions before and after pushing perturbed weights, compared across engines (module docstring)."""

    logprobs = {}

    def greedy(name, engine, when):
        runs = [engine.generate([p], CHECK_TOKENS, greedy=True) for p in prompts]
        logprobs[name, when] = [r.get("logprobs", [[]])[0] for r in runs]
        return [r["completions"][0] for r in runs]

    before = {name: greedy(name, e, "before") for name, e in engines.items()}
    perturb()
    pushes = {name: [e.push() for _ in range(PUSHES)] for name, e in engines.items()}
    after = {name: greedy(name, e, "after") for name, e in engines.items()}
    own, inp = (before["own_process"], before["in_process"]), (after["own_process"], after["in_process"])
    out = {
        "prompts": len(prompts),
        "tokens": CHECK_TOKENS,
        "same_before_push": first_difference(*own) is None,
        "same_after_push": first_difference(*inp) is None,
        "first_difference_after_push": first_difference(*inp),
        "changed_by_push": {name: before[name] != after[name] for name in engines},
        "push_seconds": {name: {path: [p[path] for p in runs] for path in runs[0]} for name, runs in pushes.items()},
        # where the tokens agree, how far the engines' logprobs of them are apart (numerics, not weights, if tiny)
        "max_logprob_difference_after_push": max_difference(
            after["own_process"], logprobs["own_process", "after"], logprobs["in_process", "after"], inp[1]
        ),
    }
    out["passed"] = out["same_before_push"] and out["same_after_push"] and all(out["changed_by_push"].values())
    return out


def speed(engines: dict, prompts: list[list[int]], tokens: int, calls: int) -> dict:
    """One warm-up, then `calls` generate calls per engine, alternating: every call's numbers."""
    for engine in engines.values():
        engine.generate(prompts, tokens, greedy=False)
    runs = {name: [] for name in engines}
    for _ in range(calls):
        for name, engine in engines.items():
            r = engine.generate(prompts, tokens, greedy=False)
            generated = sum(len(c) for c in r["completions"])
            runs[name].append({"seconds": r["seconds"], "tokens": generated, "ms_per_decode_step":
                               1e3 * r["seconds"] / max(1, tokens), **r["steps"]})  # fmt: skip
    return runs


def engine_summary(calls: list[dict]) -> dict:
    """One engine's calls: medians, its slowest step against its median step, steps over 0.25 s."""

    def med(key):
        return statistics.median(c[key] for c in calls) if calls and key in calls[0] else None

    out = {"calls": len(calls), "seconds_median": med("seconds"), "ms_per_decode_step_median": med("ms_per_decode_step"),
           "step_ms_median": med("engine/step_ms_median")}  # fmt: skip
    if calls and "engine/step_ms_max" in calls[0]:
        out["step_ms_max"] = max(c["engine/step_ms_max"] for c in calls)
        out["step_max_over_median"] = max(c["engine/step_ms_max"] / c["engine/step_ms_median"] for c in calls)
        out["slow_steps"] = sum(c["engine/slow_steps"] for c in calls)
    return out


def run_probe(engines: dict, perturb, args, device_used=lambda: None, save=lambda result: None) -> dict:
    """The probe on built engines (`engines`: name -> ProbeEngine or a double with the same methods; one alone is
    timed, the comparison needs both). `save(result)` after each phase: a probe cut short keeps what ran."""
    result: dict = {"engines": {name: {"build_s": e.build_s} for name, e in engines.items()}}
    if set(engines) == set(ENGINES):
        check = make_prompts(CHECK_PROMPTS, 1, args.prompt_tokens, args.seed + 1)
        result["correctness"] = correctness(engines, perturb, check)
        for name, pushes in result["correctness"]["push_seconds"].items():
            result["engines"][name]["push_s_median"] = {path: statistics.median(v) for path, v in pushes.items()}
    else:
        result["correctness"] = {"passed": False, "skipped": f"needs both engines, built: {sorted(engines)}"}
    save(result)
    batch = make_prompts(args.prompts, args.sequences // args.prompts, args.prompt_tokens, args.seed)
    runs = speed(engines, batch, args.tokens, args.steps)
    result["calls"] = runs
    for name, e in engines.items():
        result["engines"][name].update(engine_summary(runs[name]), **e.memory())
    own, inp = (result["engines"].get(n, {}).get("seconds_median") for n in ("own_process", "in_process"))
    result["own_over_in_process_seconds"] = own / inp if own and inp else None
    result["device_used_gib_end"] = device_used()
    save(result)
    return result


def table(result: dict) -> str:
    """The probe's result, a few lines (printed last)."""
    lines = [f"{'engine':<13}{'build s':>8}{'s/call':>8}{'ms/step':>8}{'step med':>9}{'step max':>9}{'max/med':>8}"
             f"{'slow':>5}  weight push (median s)   memory GiB"]  # fmt: skip

    def f(v, spec=".2f"):
        return format(v, spec) if isinstance(v, (int, float)) else "-"

    for name, e in result["engines"].items():
        if "seconds_median" not in e:
            lines.append(f"{name:<13}{e.get('error', 'not measured')[-200:]}")
            continue
        pushes = ", ".join(f"{k} {v:.3f}" for k, v in e.get("push_s_median", {}).items())
        memory = ", ".join(f"{k.replace('_gib', '')} {v:.1f}" for k, v in e.items() if k.endswith("_gib"))
        lines.append(f"{name:<13}{f(e['build_s'], '.0f'):>8}{f(e['seconds_median']):>8}{f(e['ms_per_decode_step_median']):>8}"
                     f"{f(e.get('step_ms_median')):>9}{f(e.get('step_ms_max')):>9}{f(e.get('step_max_over_median'), '.1f'):>8}"
                     f"{f(e.get('slow_steps'), '.0f'):>5}  {pushes}   {memory}")  # fmt: skip
    c = result["correctness"]
    ratio = result.get("own_over_in_process_seconds")
    lines.append(f"own_process / in_process seconds per call: {ratio:.3f}" if ratio else "own_process / in_process: -")
    if "skipped" in c:
        lines.append(f"correctness not checked: {c['skipped']}")
        return "\n".join(lines)
    lines.append(f"correctness {'PASSED' if c['passed'] else 'FAILED'}: greedy equal before push {c['same_before_push']}, "
                 f"after push {c['same_after_push']} (first difference {c['first_difference_after_push']}, "
                 f"max logprob difference {c['max_logprob_difference_after_push']}), "
                 f"changed by push {c['changed_by_push']}")  # fmt: skip
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    import torch

    if not torch.cuda.is_available():
        print("the engine probe needs a CUDA GPU and vLLM", file=sys.stderr)
        return 2
    from accelerate import Accelerator
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from open_grpo.data.models import resolve_model
    from open_grpo.engine import probe_engines

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start, path = time.time(), resolve_model(args.model)

    def used() -> float:
        free, total = torch.cuda.mem_get_info()
        return round((total - free) / 2**30, 2)

    stages = {"start": used()}
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).to("cuda").eval()
    tokenizer, accelerator = AutoTokenizer.from_pretrained(path), Accelerator()
    stages["policy"] = used()
    engines, failed = {}, {}
    for name in ENGINES:
        try:
            engines[name] = probe_engines.build(name, model, tokenizer, accelerator, sequences=args.sequences,
                                                max_model_len=args.prompt_tokens + args.tokens)  # fmt: skip
        except Exception:  # the other engine is still measured; the traceback goes into probe.json
            failed[name] = traceback.format_exc()[-4000:]
            print(failed[name], file=sys.stderr, flush=True)
        stages[name] = used()
    gen = torch.Generator(device="cuda").manual_seed(args.seed)

    @torch.no_grad()
    def perturb():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen, device=p.device, dtype=torch.float32).to(p.dtype)
                   * (PERTURB_SCALE * p.float().std()))  # fmt: skip

    info = dict(args=vars(args), model=args.model, card=torch.cuda.get_device_name(), device_used_gib=stages,
                versions=_versions())  # fmt: skip

    def save(result):
        for name, error in failed.items():
            result["engines"][name] = {"error": error}
        (out / "probe.json").write_text(json.dumps({**result, **info, "wall_s": time.time() - start}, indent=1))

    result = run_probe(engines, perturb, args, used, save)
    for engine in engines.values():
        engine.close()
    print(table(result))
    return 0 if result["correctness"]["passed"] else 1


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for pkg in ("torch", "vllm", "trl", "transformers", "accelerate"):
        try:
            found[pkg] = version(pkg)
        except PackageNotFoundError:
            found[pkg] = None
    return found


if __name__ == "__main__":
    sys.exit(main())
