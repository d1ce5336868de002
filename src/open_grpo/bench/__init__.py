"""`open-grpo bench`: GRPO throughput on a GPU, plain TRL's defaults against open_grpo's, rows interleaved; and the
GPU tools beside it.

driver.py           the command: runs each variant in its own process, writes bench/results/<UTC>-<card>.json + PNG
worker.py           one variant in one process: build the trainer, train warm-up + timed steps, write per-step times
variants.py         the named variants (`trl-default`, `open_grpo` from the reference recipe, single levers, the
                    off-policy `open_grpo-ahead`)
stats.py, report.py ratios with bootstrap intervals, the headline; the table and the PNG
engine_probe.py     `python -m open_grpo.bench.engine_probe`: the colocated engine in-process vs in its own process
offpolicy_curve.py  `python -m open_grpo.bench.offpolicy_curve`: off-policy vs on-policy reward curves
sanity_workload.py  the sanity check's workload (also bench/sanity_check.py's)
"""
