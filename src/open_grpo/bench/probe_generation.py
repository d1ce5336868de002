"""Where does colocated generation time go? One vLLM engine built as TRL 1.16 builds it (colocate, external
launcher, logprobs_mode=processed_logprobs, max_num_batched_tokens=4096, max_num_seqs=16), timed on the seed
workload (16 sequences x 1024 tokens) under sampling variants. Needs a GPU:

    python -m open_grpo.bench.probe_generation MODEL_PATH [engine_kwargs_json]
    OPEN_GRPO_PROFILE=DIR/generate.json python -m open_grpo.bench.probe_generation MODEL_PATH   # + torch.profiler

With OPEN_GRPO_PROFILE set, one TRL-style generate of 256 tokens also runs under torch.profiler: the GPU-busy time
(CUDA kernels) against the wall time per decode step, and the top CPU and CUDA ops, printed and saved as JSON: the
split between the GPU's work and the host's per-step overhead.
"""

import json
import os
import sys
import time

os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT="29533")


def main():
    import torch
    from vllm import LLM, SamplingParams

    model = sys.argv[1]
    extra = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    kwargs = dict(model=model, tensor_parallel_size=1, gpu_memory_utilization=0.3, max_model_len=1536, max_num_seqs=16,
                  distributed_executor_backend="external_launcher", seed=0, max_num_batched_tokens=4096,
                  logprobs_mode="processed_logprobs")  # fmt: skip
    kwargs.update(extra)
    t0 = time.time()
    llm = LLM(**kwargs)
    cfg = llm.llm_engine.vllm_config
    print(f"engine {extra} built in {time.time() - t0:.0f}s; async_scheduling={cfg.scheduler_config.async_scheduling} "
          f"cudagraph_mode={cfg.compilation_config.cudagraph_mode} sizes={cfg.compilation_config.cudagraph_capture_sizes}")  # fmt: skip
    gen = torch.Generator().manual_seed(0)
    prompts = [{"prompt_token_ids": torch.randint(300, 100000, (256,), generator=gen).tolist()} for _ in range(16)]
    base = dict(n=1, temperature=1.0, top_p=1.0, top_k=-1, min_p=0.0, max_tokens=1024, repetition_penalty=1.0)
    variants = {
        "trl (logprobs=0)": dict(base, logprobs=0),
        "detokenize=False": dict(base, logprobs=0, detokenize=False),
        "no logprobs": dict(base, logprobs=None),
        "no logprobs, no detok": dict(base, logprobs=None, detokenize=False),
        "trl, again": dict(base, logprobs=0),
    }
    llm.generate(prompts, SamplingParams(**dict(base, max_tokens=64)), use_tqdm=False)  # warm-up
    for name, sp in variants.items():
        torch.cuda.synchronize()
        t = time.perf_counter()
        out = llm.generate(prompts, SamplingParams(**sp), use_tqdm=False)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t
        tokens = sum(len(o.outputs[0].token_ids) for o in out)
        print(f"{name:<24} {dt:6.2f} s  {tokens} tokens  {dt / 1024 * 1e3:5.2f} ms/decode step", flush=True)
    if os.environ.get("OPEN_GRPO_PROFILE"):
        profile(
            llm, prompts, SamplingParams(**dict(base, logprobs=0, max_tokens=256)), os.environ["OPEN_GRPO_PROFILE"]
        )
    # the same 16 sequences as 2 prompts x n=8
    sp = SamplingParams(**dict(base, logprobs=0, n=8))
    t = time.perf_counter()
    llm.generate(prompts[:2], sp, use_tqdm=False)
    print(f"{'2 prompts x n=8':<24} {time.perf_counter() - t:6.2f} s", flush=True)


def profile(llm, prompts, sp, path: str) -> None:
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    torch.cuda.synchronize()
    with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t = time.perf_counter()
        llm.generate(prompts, sp, use_tqdm=False)
        torch.cuda.synchronize()
        wall = time.perf_counter() - t
    events = prof.key_averages()
    kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
    gpu_s = sum(e.self_device_time_total for e in kernels) / 1e6
    top = lambda rows, key: [(e.key[:80], round(getattr(e, key) / 1e3, 2), e.count) for e in  # noqa: E731
                             sorted(rows, key=lambda e: -getattr(e, key))[:12]]  # fmt: skip
    result = {
        "decode_steps": sp.max_tokens,
        "wall_s": round(wall, 3),
        "gpu_kernels_s": round(gpu_s, 3),
        "wall_ms_per_step": round(wall / sp.max_tokens * 1e3, 3),
        "gpu_ms_per_step": round(gpu_s / sp.max_tokens * 1e3, 3),
        "top_cuda_ms": top(kernels, "self_device_time_total"),
        "top_cpu_ms": top(
            [e for e in events if e.device_type == torch.autograd.DeviceType.CPU], "self_cpu_time_total"
        ),
    }
    print(json.dumps(result, indent=1), flush=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
