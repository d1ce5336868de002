"""Preflight: will this recipe run on this layout? Offline, no GPU needed, in seconds.

    open-grpo check qwen-math-1.5b                          # 1 node x 8 GPUs, ZeRO-3, this machine's card memory
    open-grpo check qwen-math-7b --nodes 2 --gpus-per-node 4 --gpu-mem-gib 141 --accelerate zero2
    open-grpo check qwen-math-1.5b --per_device_train_batch_size 8   # any recipe key as an override

Prints the process layout (data-parallel replicas, tensor-parallel groups of consecutive ranks), the batch
arithmetic and a memory plan per GPU; exits 1 listing every problem. The trainer runs the same checks at start-up
with the real world size and cards. Card memory: --gpu-mem-gib, else this machine's GPU, else 80 GiB (said so).
"""

NAME = "check"
HELP = "preflight: layout, batch arithmetic, memory plan (offline, no GPU needed)"
CHECK_FAILED = 1


def add_arguments(p) -> None:
    from ..preflight import ZERO_STAGE

    p.add_argument("recipe", help="a recipe name (open-grpo recipes) or a path to a recipe YAML")
    p.add_argument("--gpus-per-node", type=int, default=8)
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--gpu-mem-gib", type=float, default=None, help="card memory (default: this machine's, else 80)")
    p.add_argument("--accelerate", default="zero3", choices=sorted(ZERO_STAGE), help="accelerate config name")


def run(args, overrides: list[str]) -> int:
    from ..config import load_recipe
    from ..lora import adapter_plan
    from ..preflight import ZERO_STAGE, card_memory_gib, model_facts, plan

    recipe = load_recipe(args.recipe, overrides, for_planning=True)
    facts = model_facts(recipe.model.model_name_or_path)
    gpu_mem, source = (args.gpu_mem_gib, "--gpu-mem-gib") if args.gpu_mem_gib else card_memory_gib()
    result = plan(
        recipe.training,
        recipe.script.max_prompt_tokens,
        facts,
        gpus_per_node=args.gpus_per_node,
        nodes=args.nodes,
        gpu_mem_gib=gpu_mem,
        zero_stage=ZERO_STAGE[args.accelerate],
        adapter=adapter_plan(facts, recipe.model),
    )
    print(f"recipe {recipe.path}  ({args.accelerate}; card memory {gpu_mem:g} GiB from {source})")
    print(result.render())
    print("OK" if not result.errors else f"{len(result.errors)} problem(s)")
    return CHECK_FAILED if result.errors else 0
