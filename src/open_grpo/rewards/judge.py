"""`judge`: an LLM grades each completion through an OpenAI-compatible chat endpoint; its score, normalised to [0, 1].

    rewards:
      - name: judge
        base_url: http://judge-node:8000/v1      # what slurm/judge_server.sbatch prints (vLLM's `vllm serve`)
        model: Qwen/Qwen2.5-7B-Instruct           # the name the server serves
        api_key_env: JUDGE_API_KEY                # the NAME of an environment variable holding the key (optional)
        weight: 0.5

Each completion becomes one chat request: `prompt_template` filled with the prompt's last user message
(`{prompt}`), the completion's text (`{completion}`) and the gold answer (`{solution}`, empty without one). The score
is the last "Score: X" in the reply (else a reply that is only a number), in [min_score, max_score], mapped to
[0, 1]; a reply without one, or out of range, scores None and counts in `rewards/judge/errors`. Requests run
concurrently, at most `max_concurrency` at once per training process; each has `request_timeout` seconds; timeouts,
connection errors, HTTP 429 and 5xx are retried `max_retries` times, waiting `retry_backoff` x 2^attempt seconds.
A completion whose requests all fail scores None (counted in `timeouts` or `errors`); when every request of a call
fails (the server is down) the call fails, and the reward's `on_error` decides (none: None, zero: 0, raise: stop).
At start-up the run checks the key's variable is set and the server lists `model` (GET {base_url}/models).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import string
from dataclasses import dataclass
from typing import Any

from open_grpo.rewards.events import note
from open_grpo.rewards.hooks import checks_at_start, checks_params
from open_grpo.rewards.limits import RewardTimeout
from open_grpo.rewards.text import completion_text

DEFAULT_TEMPLATE = """Grade the answer to the question below. A reference answer is given when one exists.

Question:
{prompt}

Reference answer:
{solution}

Answer to grade:
{completion}

Judge correctness first, then clarity. Reply with a short justification, then a last line "Score: X", where X is
an integer from 0 (wrong or useless) to 10 (correct and clear)."""
TEMPLATE_FIELDS = ("prompt", "completion", "solution")
SCORE = re.compile(r"score\W{0,6}?(-?\d+(?:\.\d+)?)", re.IGNORECASE)  # "Score: 7", "score = 7.5", "**Score:** 8/10"
BARE_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})  # worth asking again; other statuses will not change
PROBE_TIMEOUT_S = 10.0  # the start-up check of the server

logger = logging.getLogger(__name__)


class JudgeUnavailable(RuntimeError):
    """Every request of a call failed: the call fails, and `on_error` applies to the batch."""


class JudgeTimedOut(RewardTimeout):
    """Every request of a call timed out: the call fails (counted as timeouts), and `on_error` applies."""


def _check(p: dict[str, Any]) -> list[str]:
    problems = []
    if not isinstance(p["base_url"], str) or not p["base_url"].startswith(("http://", "https://")):
        problems.append(f"'base_url' must be an http(s) URL such as http://host:8000/v1, got {p['base_url']!r}")
    if not isinstance(p["model"], str) or not p["model"].strip():
        problems.append(f"'model' must name the model the server serves, got {p['model']!r}")
    problems += _template_problems(p["prompt_template"])
    env = p["api_key_env"]
    if env and (not isinstance(env, str) or not ENV_NAME.match(env)):
        problems.append(
            "'api_key_env' is the NAME of an environment variable holding the key (e.g. JUDGE_API_KEY), not the key: "
            "never write a key into a recipe"
        )
    lo, hi = p["min_score"], p["max_score"]
    if not (_number(lo) and _number(hi) and lo < hi):
        problems.append(f"'min_score' must be below 'max_score', got {lo!r} and {hi!r}")
    for key, least in (("max_concurrency", 1), ("max_retries", 0), ("max_tokens", 1)):
        if not isinstance(p[key], int) or isinstance(p[key], bool) or p[key] < least:
            problems.append(f"{key!r} must be an integer >= {least}, got {p[key]!r}")
    for key in ("request_timeout", "retry_backoff", "temperature"):
        positive = key == "request_timeout"
        if not _number(p[key]) or p[key] < 0 or (positive and p[key] == 0):
            problems.append(f"{key!r} must be a {'positive' if positive else 'non-negative'} number, got {p[key]!r}")
    return problems


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _template_problems(template: Any) -> list[str]:
    if not isinstance(template, str):
        return [f"'prompt_template' must be a string, got {template!r}"]
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as e:
        return [f"'prompt_template' is not a valid template ({e}): write a literal brace as {{{{ or }}}}"]
    unknown = sorted(fields - set(TEMPLATE_FIELDS))
    problems = []
    if unknown:
        problems.append(
            f"'prompt_template' has unknown placeholders {unknown}: it may use {{prompt}}, {{completion}}, "
            "{solution} (a literal brace is {{ or }})"
        )
    if "completion" not in fields:
        problems.append("'prompt_template' must contain {completion}: the judge would not see what it grades")
    return problems


def _check_at_start(p: dict[str, Any]) -> list[str]:
    """The key's variable is set, and the server answers and serves `model`."""
    import httpx

    env = p["api_key_env"]
    if env and not os.environ.get(env):
        return [f"api_key_env names {env!r}, which is not set (or empty) in this environment: export it"]
    url = f"{p['base_url'].rstrip('/')}/models"
    try:
        response = httpx.get(url, headers=_headers(env), timeout=PROBE_TIMEOUT_S)
    except httpx.HTTPError as e:
        return [
            f"the judge server does not answer at {url} ({type(e).__name__}: {e}): start it "
            "(sbatch slurm/judge_server.sbatch MODEL) and set base_url to the URL it prints"
        ]
    if response.status_code in (401, 403):
        return [
            f"the judge server refused the key at {url} (HTTP {response.status_code}): check {env or 'api_key_env'}"
        ]
    if response.status_code != 200:
        return []  # a server without the listing (not every compatible server has one): the requests will tell
    try:
        served = [m["id"] for m in response.json()["data"]]
    except (ValueError, KeyError, TypeError):
        return []
    if p["model"] not in served:
        return [f"the judge server at {p['base_url']} serves {served}, not model {p['model']!r}: set 'model' to one"]
    return []


def _headers(env: str) -> dict[str, str]:
    key = os.environ.get(env) if env else None
    return {"Authorization": f"Bearer {key}"} if key else {}


def parse_score(reply: str, min_score: float, max_score: float) -> float | None:
    """The reply's score mapped to [0, 1]: its last "Score: X", else the reply itself if it is only a number; None
    for a reply without one or a score outside [min_score, max_score]."""
    found = SCORE.findall(reply)
    text = found[-1] if found else reply.strip().strip("*.")
    if not BARE_NUMBER.fullmatch(text):
        return None
    value = float(text)
    if not min_score <= value <= max_score:
        return None
    return (value - min_score) / (max_score - min_score)


@dataclass
class Outcome:
    reply: str | None = None
    failure: str | None = None  # "timeout" or "error": every attempt failed
    detail: str = ""


async def _ask(client, limit: asyncio.Semaphore, body: dict, p: dict[str, Any]) -> Outcome:
    """One completion's request, retried on timeouts, connection errors, 429 and 5xx."""
    import httpx

    url = f"{p['base_url'].rstrip('/')}/chat/completions"
    outcome = Outcome(failure="error")
    for attempt in range(p["max_retries"] + 1):
        if attempt:
            await asyncio.sleep(p["retry_backoff"] * 2 ** (attempt - 1))  # outside the limit: others may go
        async with limit:
            try:
                response = await asyncio.wait_for(client.post(url, json=body), p["request_timeout"])
            except (asyncio.TimeoutError, httpx.TimeoutException):
                outcome = Outcome(failure="timeout", detail=f"no answer within {p['request_timeout']:g}s")
                continue
            except httpx.HTTPError as e:
                outcome = Outcome(failure="error", detail=f"{type(e).__name__}: {e}")
                continue
        if response.status_code != 200:
            outcome = Outcome(failure="error", detail=f"HTTP {response.status_code}: {response.text[:200]}")
            if response.status_code in RETRY_STATUS:
                continue
            return outcome
        try:
            return Outcome(reply=response.json()["choices"][0]["message"]["content"] or "")
        except (ValueError, KeyError, IndexError, TypeError):
            return Outcome(failure="error", detail=f"not a chat completion: {response.text[:200]}")
    return outcome


async def _ask_all(requests: list[dict], p: dict[str, Any]) -> list[Outcome]:
    import httpx

    limit = asyncio.Semaphore(p["max_concurrency"])
    pool = httpx.Limits(max_connections=p["max_concurrency"], max_keepalive_connections=p["max_concurrency"])
    timeout = httpx.Timeout(p["request_timeout"])
    async with httpx.AsyncClient(headers=_headers(p["api_key_env"]), limits=pool, timeout=timeout) as client:
        return await asyncio.gather(*(_ask(client, limit, body, p) for body in requests))


def _prompt_text(prompt: Any) -> str:
    """The prompt's last user message (a chat prompt), or the prompt itself (a plain one)."""
    if isinstance(prompt, (list, tuple)):
        users = [m for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        return completion_text(users[-1]) if users else ""
    return prompt if isinstance(prompt, str) else ""


@checks_params(_check)
@checks_at_start(_check_at_start)
def judge(
    completions,
    *,
    base_url: str,
    model: str,
    prompt_template: str = DEFAULT_TEMPLATE,
    min_score: float = 0.0,
    max_score: float = 10.0,
    api_key_env: str = "",
    max_concurrency: int = 16,
    request_timeout: float = 60.0,
    max_retries: int = 3,
    retry_backoff: float = 1.0,
    temperature: float = 0.0,
    max_tokens: int = 512,
    **columns,
) -> list[float | None]:
    """An LLM judge over an OpenAI-compatible endpoint grades each completion; its score mapped to [0, 1]."""
    p = {k: v for k, v in locals().items() if k not in ("completions", "columns")}  # the parameters, for the helpers
    prompts = columns.get("prompts") or [""] * len(completions)
    solutions = columns.get("solution") or [None] * len(completions)
    requests = [
        {
            "model": model,
            "messages": [
                {
                    "role": "user",
                    "content": prompt_template.format(
                        prompt=_prompt_text(prompt),
                        completion=completion_text(completion),
                        solution="" if solution is None else str(solution),
                    ),
                }
            ],
            "temperature": temperature,
            "max_tokens": max_tokens,
        }
        for prompt, completion, solution in zip(prompts, completions, solutions)
    ]
    outcomes = asyncio.run(_ask_all(requests, p))
    failed = [o for o in outcomes if o.failure]
    if outcomes and len(failed) == len(outcomes):
        kind = JudgeTimedOut if all(o.failure == "timeout" for o in failed) else JudgeUnavailable
        raise kind(f"all {len(outcomes)} requests to the judge at {base_url} failed; the first: {failed[0].detail}")
    if failed:
        logger.warning("judge: %d of %d requests failed; the first: %s", len(failed), len(outcomes), failed[0].detail)
    scores = [None if o.failure else parse_score(o.reply, min_score, max_score) for o in outcomes]
    unparsed = [o.reply for o, score in zip(outcomes, scores) if score is None and not o.failure]
    if unparsed:
        logger.warning("judge: %d replies without a score in [%g, %g]; the first: %.200r", len(unparsed), min_score,
                       max_score, unparsed[0])  # fmt: skip
    note("timeouts", sum(o.failure == "timeout" for o in failed))
    note("errors", sum(o.failure == "error" for o in failed) + len(unparsed))
    return scores
