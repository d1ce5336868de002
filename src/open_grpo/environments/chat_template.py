"""Can TRL run tool calls through this tokenizer's chat template? TRL's own checks, asked before any model loads.

TRL needs a template that renders a whole tool exchange (user -> assistant with tool_calls -> tool), a response
parser for it (to read the model's tool calls), and a prefix-preserving template (it appends the tool's tokens to the
generated ones), or a training variant it ships for that template. `open-grpo check` asks the same of the tokenizer
when it is available offline (a local folder, the local hub cache, or a `random:<shape>` model's).
"""

from __future__ import annotations

import copy
import logging

logger = logging.getLogger(__name__)

FIX = "use a model whose chat template supports tools (e.g. Qwen/Qwen2.5-1.5B-Instruct), or give its tokenizer one"


def template_problems(tokenizer, model: str) -> list[str]:
    """One line per reason TRL cannot run tool calls with `tokenizer` (empty: it can)."""
    from trl.chat_template_utils import (
        add_response_schema,
        get_training_chat_template,
        is_chat_template_prefix_preserving,
        supports_tool_calling,
    )

    if not supports_tool_calling(tokenizer):
        return [f"the chat template of {model!r} cannot render a tool call and its result (user -> assistant with "
                f"tool_calls -> tool), so the model could never see a tool; {FIX}"]  # fmt: skip
    problems = []
    has_parser = any(getattr(tokenizer, a, None) is not None for a in ("response_template", "response_schema"))
    if not has_parser:
        try:
            add_response_schema(copy.copy(tokenizer))  # TRL sets the parser for templates it knows
        except ValueError:
            problems.append(f"TRL has no response parser for the chat template of {model!r}: it could not read the "
                            f"model's tool calls; set `response_template` on the tokenizer, or {FIX}")  # fmt: skip
    if not is_chat_template_prefix_preserving(tokenizer):
        try:
            get_training_chat_template(tokenizer)  # TRL swaps in its prefix-preserving variant where it has one
        except ValueError:
            problems.append(f"the chat template of {model!r} renders earlier turns differently once a tool result "
                            "follows (not prefix-preserving) and TRL ships no training variant of it: tool results "
                            f"would be spliced into the wrong tokens; {FIX}")  # fmt: skip
    return problems


def offline_tokenizer(model: str, revision: str | None = None):
    """The tokenizer of `model` when it is on this machine (None otherwise): nothing is downloaded."""
    from open_grpo.planning.model_shapes import RANDOM_PREFIX

    if model.startswith(RANDOM_PREFIX):
        from open_grpo.data.tiny_model import qwen_tokenizer

        return qwen_tokenizer()
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model, revision=revision, local_files_only=True)
    except (OSError, ValueError) as e:
        logger.info("tokenizer of %s not available offline: %s", model, e)
        return None
