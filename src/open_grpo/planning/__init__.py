"""Planning a run before any GPU is touched: model shapes, the process layout and batch arithmetic, the memory
plan per GPU in named terms (memory_plan.py, kv_cache_plan.py), the preflight `open-grpo check` prints
(preflight.py, recipe_plan.py), the machine's GPUs (gpus.py) and the job values `launch-args` derives (launch.py)."""
