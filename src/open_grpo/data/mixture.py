"""Dataset mixtures: `datasets:` in a recipe, several prompt sources mixed by weight.

    datasets:
      - {name: data/easy.jsonl, weight: 2, prompt_column: question, solution_column: answer}
      - {name: reasoning-gym:basic_arithmetic, weight: 1, size: 500}
      - {name: DigitalLearningGmbH/MATH-lighteval, weight: 1, split: train, system_prompt: "Think step by step."}

Each entry's `name` is anything `dataset_name` accepts (a hub id, a local file or folder, `reasoning-gym:<task>`) and
loads through data.py with the entry's own split, size, columns and system prompt; a key the entry leaves out takes
the recipe's top-level value (`dataset_train_split`, `dataset_size`, `dataset_config`, `prompt_column`,
`solution_column`, `system_prompt`). Every source becomes the columns `prompt` (chat messages) and `solution` (null
where a source has no solution column), plus the columns all sources share with one type (an `environment` column
that routes rows to tools, a code reward's `tests`); `datasets.interleave_datasets` then mixes them: each row comes from source i
with probability weight_i / sum(weights), drawn with the run's seed. `mixture_stopping_strategy` is datasets' own:
`first_exhausted` (the default: the mix ends when a source runs out, no row repeats), `all_exhausted` (sources that
run out start over until every row of every source was used: more rows, the small sources repeated),
`all_exhausted_without_replacement`. `max_prompt_tokens` applies to the mix. The mix is logged at start: each source's
rows, its rows in the mix and its weight. The entries are checked with the recipe (recipe/rules_data.py).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter

from open_grpo.data.prompts import filter_long_prompts, load_raw_dataset, to_prompts
from open_grpo.errors import RecipeError
from open_grpo.recipe.keys import ScriptArguments
from open_grpo.recipe.rules_data import FIELD_OF_ENTRY_KEY

logger = logging.getLogger(__name__)

SOURCE_COLUMN = "_mixture_source"


def source_arguments(script: ScriptArguments, entry: dict) -> ScriptArguments:
    """The recipe's data settings with one entry's keys over them: what data.py loads that source with."""
    changes = {FIELD_OF_ENTRY_KEY[k]: v for k, v in entry.items() if k in FIELD_OF_ENTRY_KEY}
    return dataclasses.replace(script, datasets=None, **changes)


def shared_columns(datasets) -> list[str]:
    """The columns besides prompt and solution that every source has with the same type (e.g. `environment`, which
    routes a row to its tool environment, or a code reward's `tests`): kept in the mix for rewards and tools."""
    first, *rest = datasets
    return [
        c for c in first.column_names
        if c not in ("prompt", "solution", SOURCE_COLUMN)
        and all(c in d.column_names and d.features[c] == first.features[c] for d in rest)
    ]  # fmt: skip


def _unified(dataset, source: int, keep: list[str]):
    """A source's prompts as the mixture's columns: prompt, solution (null where it has none), the shared columns
    `keep`, and its index."""
    from datasets import Value

    dataset = dataset.select_columns([c for c in ("prompt", "solution", *keep) if c in dataset.column_names])
    if "solution" not in dataset.column_names:
        dataset = dataset.add_column("solution", [None] * len(dataset))
    dataset = dataset.cast_column("solution", Value("string"))
    return dataset.add_column(SOURCE_COLUMN, [source] * len(dataset))


def load_mixture(script: ScriptArguments, tokenizer, seed: int = 42, max_prompt_tokens: int | None = None):
    """The recipe's `datasets` mixed into one training set of chat prompts; problems raise `RecipeError`."""
    from datasets import interleave_datasets

    loaded = []
    for i, entry in enumerate(script.datasets):
        settings = source_arguments(script, entry)
        try:
            loaded.append(to_prompts(load_raw_dataset(settings, seed), settings))
        except RecipeError as e:
            raise RecipeError([f"datasets[{i}] ({entry['name']}): {p}" for p in e.problems], e.source) from e
        if len(loaded[-1]) == 0:
            raise RecipeError(f"datasets[{i}] ({entry['name']}) has no rows")
    keep = shared_columns(loaded)
    sources = [_unified(dataset, i, keep) for i, dataset in enumerate(loaded)]
    weights = [float(entry.get("weight", 1.0)) for entry in script.datasets]
    mixed = interleave_datasets(
        sources,
        probabilities=[w / sum(weights) for w in weights],
        seed=seed,
        stopping_strategy=script.mixture_stopping_strategy,
    )
    in_mix = Counter(mixed[SOURCE_COLUMN])
    logger.info("dataset mixture (%s): %d rows; columns %s", script.mixture_stopping_strategy, len(mixed),
                ", ".join(c for c in mixed.column_names if c != SOURCE_COLUMN))  # fmt: skip
    for i, (entry, source) in enumerate(zip(script.datasets, sources)):
        logger.info(
            "  %s: %d rows, %d in the mix (%.1f%%), weight %g (%.1f%%)",
            entry["name"], len(source), in_mix[i], 100 * in_mix[i] / max(1, len(mixed)),
            weights[i], 100 * weights[i] / sum(weights),
        )  # fmt: skip
    return filter_long_prompts(mixed.remove_columns(SOURCE_COLUMN), tokenizer, max_prompt_tokens)
