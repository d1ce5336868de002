"""`open-grpo bench`: GRPO throughput on a GPU, plain TRL's defaults against open_grpo's, rows interleaved.

driver.py    the command: runs each variant in its own process, writes bench/results/<UTC>-<card>.json + PNG
worker.py    one variant in one process: build the trainer, train warm-up + timed steps, write per-step times
variants.py  the named variants (`trl-default`, `open_grpo` from the reference recipe, single levers)
"""
