"""A math-verify worker process: reads JSON requests on stdin, writes one JSON answer per line on stdout.

Started by `verifier.VerifierPool` (`python -c`, the working directory taken off sys.path first, then `main()` with
MEMORY_MB as its argument). It runs in its own process (not forked from the trainer, nothing from `__main__`
re-imported) so that the pool can kill it when a parse or a comparison runs past its wall-clock limit, which
math-verify's own SIGALRM timeout cannot guarantee.
"""

import json
import resource
import sys


def main() -> None:
    memory_mb = int(sys.argv[1]) if len(sys.argv) > 1 else 2048
    from latex2sympy2_extended import NormalizationConfig
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    gold_config = [LatexExtractionConfig(), ExprExtractionConfig()]
    # As open-r1: the model must write its answer in proper LaTeX, \boxed first.
    boxed_config = [
        LatexExtractionConfig(
            normalization_config=NormalizationConfig(
                nits=False, malformed_operators=False, basic_latex=True, equations=True, boxed="all", units=True
            ),
            boxed_match_priority=0,
            try_extract_without_anchor=False,
        )
    ]
    # Inside <answer>...</answer> the tag is the anchor: '42' and '$42$' both count.
    tagged_config = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]

    def score(gold: str, answer: str, tagged: bool) -> float | None:
        gold_parsed = parse(gold, extraction_config=gold_config, extraction_mode="first_match")
        if not gold_parsed:
            return None  # an unparseable gold answer can never earn a reward
        answer_parsed = parse(
            answer, extraction_config=tagged_config if tagged else boxed_config, extraction_mode="first_match"
        )
        if not answer_parsed:
            return 0.0
        return float(verify(gold_parsed, answer_parsed))

    resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
    out = sys.stdout
    out.write('{"ready": true}\n')
    out.flush()
    for line in sys.stdin:
        try:
            request = json.loads(line)
            value, error = score(request["gold"], request["answer"], request["tagged"]), None
        except BaseException as e:  # MemoryError and RecursionError included: answer, then carry on
            value, error = None, f"{type(e).__name__}: {str(e)[:200]}"
        out.write(json.dumps({"value": value, "error": error}) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
