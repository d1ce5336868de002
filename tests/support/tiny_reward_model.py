"""A tiny random-weight reward model for tests: Qwen2ForSequenceClassification (one label) + Qwen2.5's tokenizer."""

from pathlib import Path

from open_grpo.data.tiny_model import qwen_tokenizer
from open_grpo.planning.model_shapes import SHAPES


def save_tiny_reward_model(path, seed: int = 0, chat_template: bool = True) -> Path:
    """The tiny shape of the demo's policy with a one-output score head, saved with a tokenizer to `path`."""
    import torch
    from transformers import Qwen2Config, Qwen2ForSequenceClassification

    tokenizer = qwen_tokenizer()
    if not chat_template:
        tokenizer.chat_template = None
    config = Qwen2Config(num_labels=1, pad_token_id=tokenizer.pad_token_id, **SHAPES["tiny"].config_kwargs())
    torch.manual_seed(seed)
    model = Qwen2ForSequenceClassification(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return Path(path)
