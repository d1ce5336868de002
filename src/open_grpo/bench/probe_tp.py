"""Colocated generation at TP = 1, 2, 4: one vLLM engine per rank, built as TRL 1.16 builds it in colocate mode
(external launcher, one seed per TP group, max_num_batched_tokens=4096, processed logprobs), with open_grpo's
all-reduce setting applied as the trainer applies it. Each rank holds the bench shape's 16 prompts per GPU; the TP
group generates all of its ranks' prompts (16 x TP sequences of 1024 tokens), as TRL gathers them. Needs TP GPUs:

    torchrun --nproc-per-node 2 -m open_grpo.bench.probe_tp MODEL OUT.jsonl LABEL [--fusion auto|off|trtllm|vllm]
        [--engine '{"disable_custom_all_reduce": true}']

Rank 0 appends one JSON line to OUT.jsonl: the settings the engine resolved, its build time, and the generation
times. A run that crashes writes nothing: the caller records its exit code.
"""

import argparse
import json
import os
import sys
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("out")
    p.add_argument("label")
    p.add_argument("--fusion", default="auto")
    p.add_argument("--engine", default="{}")
    p.add_argument("--per-rank", type=int, default=16)
    p.add_argument("--tokens", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()

    import torch
    import torch.distributed as dist

    from open_grpo.engine import allreduce as vllm_allreduce

    if args.fusion == "vllm" and os.environ.get("TORCH_SYMM_MEM_DISABLE_MULTICAST") != "1":
        # vLLM's default would build NVLink multicast objects where the machine allows them: shared machines forbid that
        sys.exit("probe_tp: --fusion vllm only with TORCH_SYMM_MEM_DISABLE_MULTICAST=1 (no multicast objects)")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl")  # as accelerate does before TRL builds the engine
    world, rank = dist.get_world_size(), dist.get_rank()
    engine, why = vllm_allreduce.apply(world, args.fusion, json.loads(args.engine))

    from vllm import LLM, SamplingParams

    t0 = time.time()
    llm = LLM(model=args.model, tensor_parallel_size=world, gpu_memory_utilization=0.3, max_model_len=1536,
              max_num_seqs=args.per_rank * world, distributed_executor_backend="external_launcher", seed=0,
              max_num_batched_tokens=4096, logprobs_mode="processed_logprobs", **engine)  # fmt: skip
    build_s = time.time() - t0
    cfg = llm.llm_engine.vllm_config
    gen = torch.Generator().manual_seed(0)
    prompts = [{"prompt_token_ids": torch.randint(300, 100000, (256,), generator=gen).tolist()}
               for _ in range(args.per_rank * world)]  # fmt: skip
    sp = dict(n=1, temperature=1.0, top_p=1.0, top_k=-1, min_p=0.0, repetition_penalty=1.0, logprobs=0)
    llm.generate(prompts, SamplingParams(**dict(sp, max_tokens=64)), use_tqdm=False)  # warm-up
    times = []
    for _ in range(args.repeats):
        torch.cuda.synchronize()
        t = time.perf_counter()
        out = llm.generate(prompts, SamplingParams(**dict(sp, max_tokens=args.tokens)), use_tqdm=False)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    tokens = sum(len(o.outputs[0].token_ids) for o in out)
    if rank == 0:
        try:
            import flashinfer.comm  # noqa: F401

            flashinfer_comm = True
        except Exception as e:  # noqa: BLE001 - what is missing is the finding
            flashinfer_comm = f"{type(e).__name__}: {e}"[:200]
        row = {
            "label": args.label,
            "tp": world,
            "card": torch.cuda.get_device_name(),
            "fusion_choice": args.fusion,
            "why": why,
            "engine_kwargs": engine,
            "fuse_allreduce_rms": cfg.compilation_config.pass_config.fuse_allreduce_rms,
            "flashinfer_backend_env": os.environ.get(vllm_allreduce.BACKEND_ENV, "auto"),
            "disable_custom_all_reduce": cfg.parallel_config.disable_custom_all_reduce,
            "enforce_eager": cfg.model_config.enforce_eager,
            "cudagraph_mode": str(cfg.compilation_config.cudagraph_mode),
            "multicast_attribute": vllm_allreduce.device_multicast_supported(local_rank),
            "flashinfer_comm_import": flashinfer_comm,
            "build_s": round(build_s, 1),
            "sequences": len(prompts),
            "tokens": tokens,
            "generate_s": [round(t, 3) for t in times],
            "ms_per_decode_step": round(min(times) / args.tokens * 1e3, 3),
        }
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
