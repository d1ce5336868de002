"""Every touch of TRL's and vLLM's private API, behind one door.

    allreduce.py        how the colocated engine all-reduces with tensor parallelism (a vLLM 0.26 setting)
    batching.py         the engine's max_num_batched_tokens kept within what vLLM's start-up dummy runs address
    colocated.py        the colocated `vllm.LLM`: extra engine kwargs, KV cache sized to the batch, batched weight
                        sync, the engine's real settings, TRL's prompt sampler made resumable
    colocated_engine.py the engine's options for the trainer: where its core runs, KV sizing, weights, step metrics
    own_process.py      the engine core in a process of its own: its environment, arguments and staged weight sync
    staging.py          the staging buffer's size, offsets and chunks (pure arithmetic)
    worker_extension.py runs inside vLLM's engine process (worker_extension_cls): weights from the staging buffer
    step_watch.py       each generate call's engine steps timed; a watchdog for a step that never ends
    probe_engines.py    the two engines `open_grpo.bench.engine_probe` compares, built by the trainer's path
    generation.py       the sampling parameters TRL sends vLLM: outputs without detokenizing or per-token objects,
                        sampled logprobs only when the loss reads them, the GC paused while vLLM generates
    folded_logprobs.py  TRL's old-logprob pass folded into the loss pass
    gathered.py         the completions and rewards TRL gathered for its own logs (completions.jsonl, DAPO)

Importing this package checks that the installed TRL (and vLLM, where installed) are versions this code was written
against, and fails naming them otherwise: private APIs change without notice between releases.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

# package -> the release series the private-API code here supports
SUPPORTED = {"trl": "1.16", "vllm": "0.26"}
REQUIRED = ("trl",)  # vLLM is optional: CPU installs train with transformers' generate


class UnsupportedVersionError(ImportError):
    pass


def version_problems(installed: dict[str, str | None]) -> list[str]:
    """One line per installed package whose version is outside its supported series."""
    problems = []
    for package, series in SUPPORTED.items():
        found = installed.get(package)
        if found is None:
            if package in REQUIRED:
                problems.append(f"{package} is not installed (open_grpo needs {package}=={series}.*)")
            continue
        if found != series and not found.startswith(series + "."):
            problems.append(f"{package} {found} is installed; open_grpo supports {package}=={series}.*")
    return problems


def installed_versions() -> dict[str, str | None]:
    out = {}
    for package in SUPPORTED:
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = None
    return out


_problems = version_problems(installed_versions())
if _problems:
    raise UnsupportedVersionError(
        "open_grpo reaches into TRL/vLLM internals that change between releases: "
        + "; ".join(_problems)
        + ". Install the supported versions (pip install -e '.[gpu]' pins them)."
    )
