"""Preflight: will this recipe run on this layout? Offline, no GPU needed, in seconds.

    open-grpo check qwen-math-1.5b                          # 1 node x 8 GPUs, ZeRO-3, this machine's card memory
    open-grpo check qwen-math-7b --nodes 2 --gpus-per-node 4 --gpu-mem-gib 141 --accelerate zero2
    open-grpo check qwen-math-1.5b --per_device_train_batch_size 8   # any recipe key as an override
    open-grpo check qwen-math-1.5b --json                   # one JSON object on stdout, for scripts

Checks the recipe as strictly as training does, for the target world size (every problem listed, exit 2), then
prints the process layout (data-parallel replicas, tensor-parallel groups of consecutive ranks), the batch
arithmetic and a memory plan per GPU in named terms; exits 1 listing every problem of the plan. The trainer runs the
same checks at start-up with the real world size and cards. A recipe whose rewards run code gets the sandbox's
canary, and a recipe with tools the checks of its layout and chat template: what does not hold here is refused
(exit 2). Card memory: --gpu-mem-gib, else this
machine's GPU, else 80 GiB (said so). A model whose config.json is neither local nor in the local hub cache nor in
the built-in table is checked without its memory plan (said so).
"""

NAME = "check"
HELP = "preflight: layout, batch arithmetic, memory plan (offline, no GPU needed)"


def add_arguments(p) -> None:
    from open_grpo.planning.gpus import DEFAULT_GPUS_PER_NODE
    from open_grpo.planning.preflight import ZERO_STAGE

    p.add_argument("recipe", help="a recipe name (open-grpo recipes) or a path to a recipe YAML")
    p.add_argument("--gpus-per-node", type=int, default=DEFAULT_GPUS_PER_NODE)
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--gpu-mem-gib", type=float, default=None, help="card memory (default: this machine's, else 80)")
    p.add_argument("--accelerate", default="zero3", choices=sorted(ZERO_STAGE), help="accelerate config name")
    p.add_argument("--json", action="store_true", help="print one JSON object (layout, batch, memory_gib, errors)")


def run(args, overrides: list[str]) -> int:
    import json
    import sys

    from open_grpo.environments.setup import check_tools
    from open_grpo.errors import EXIT_CHECK_FAILED, EXIT_CONFIG_ERROR, EXIT_OK, RecipeError
    from open_grpo.planning.gpus import card_memory_gib
    from open_grpo.planning.preflight import ZERO_STAGE, layout_problems
    from open_grpo.planning.recipe_plan import plan_recipe
    from open_grpo.recipe import load_recipe
    from open_grpo.sandbox.recipe import recipe_sandbox

    usage = layout_problems(args.gpus_per_node, args.nodes)
    if args.gpu_mem_gib is not None and args.gpu_mem_gib <= 0:
        usage.append(f"--gpu-mem-gib must be positive, got {args.gpu_mem_gib:g}")
    if usage:
        if args.json:
            print(json.dumps({"errors": usage, "warnings": [], "layout": None, "memory_gib": None}))
        print("open-grpo check: " + "; ".join(usage), file=sys.stderr)
        return EXIT_CONFIG_ERROR
    try:
        recipe = load_recipe(args.recipe, overrides, world_size=args.gpus_per_node * args.nodes)
        sandbox = recipe_sandbox(recipe)  # a recipe that runs code: its sandbox must hold here (exit 2 if not)
        gpu_mem, source = (args.gpu_mem_gib, "--gpu-mem-gib") if args.gpu_mem_gib else card_memory_gib()
        result = plan_recipe(recipe, gpus_per_node=args.gpus_per_node, nodes=args.nodes, gpu_mem_gib=gpu_mem,
                             zero_stage=ZERO_STAGE[args.accelerate])  # fmt: skip
        world = args.gpus_per_node * args.nodes  # tools: what TRL's tool loop hangs on, the chat template
        result.warnings += check_tools(recipe, world, ZERO_STAGE[args.accelerate], args.accelerate)
    except RecipeError as e:
        if not args.json:
            raise
        print(json.dumps({"errors": e.problems, "warnings": [], "layout": None, "memory_gib": None}))
        print(f"open-grpo check: {e}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    code = EXIT_CHECK_FAILED if result.errors else EXIT_OK
    if args.json:
        print(
            result.to_json(
                recipe=str(recipe.path),
                accelerate=args.accelerate,
                card_memory_source=source,
                ok=not code,
                sandbox=sandbox,
            )  # fmt: skip
        )
        return code
    where = (
        "use_cpu: a CPU run"
        if recipe.training.use_cpu
        else f"{args.accelerate}; card memory {gpu_mem:g} GiB: {source}"
    )
    print(f"recipe {recipe.path}  ({where})")
    if sandbox:
        print(f"sandbox: {sandbox}")
    print(result.render())
    print("OK" if not result.errors else f"{len(result.errors)} problem(s)")
    return code
