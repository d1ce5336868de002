"""open_grpo: GRPO recipes with vLLM colocated inside the training processes, on TRL. README.md has the module map."""

__version__ = "0.1.0"
