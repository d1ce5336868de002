"""Answers built to stall a math verifier (power towers, deep nesting, huge text, lone surrogates, ...): the
reward-speed benchmark (reward_speed.py) times the worst of them, tests/unit/rewards/test_verifier.py bounds each."""

ADVERSARIAL = [
    r"\boxed{5^{5^{5^{5^5}}}}",  # a power tower: C-level big-integer arithmetic
    r"\boxed{9^{9^{9^{9^{9^{9}}}}}}",
    r"\boxed{" + r"\frac{1}{" * 1000 + "2" + "}" * 1000 + "}",  # 1,000-deep nesting
    "(" * 1000 + "1" + ")" * 1000,
    "x" * 1_000_000,  # a 1 MB completion
    r"\boxed{" + "1+" * 50_000 + "1}",
    "\ud800\udfff lone surrogates \boxed{\udc80}",
    "invalid \x00 bytes \x1b[31m",
    r"\boxed{}",
    r"\boxed{1} \boxed{2} \boxed{3}",
    r"\boxed{\frac{}{}}",
    r"\boxed{\left( \right. \begin{matrix} & \\ \end{pmatrix}}",
    r"\boxed{10!!!!!!!!}",
    r"\boxed{\sum_{n=1}^{10^{10^{10}}} n}",
]
