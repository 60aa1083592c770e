"""`attestflow check`: the pre-merge and preflight gate for code, dependencies and the supply chain.

Each check is a function ``run(ctx: CheckContext) -> list[Finding]`` in its own module of this
package, named in `attestflow.checks.runner.CHECKS`. A finding names the check, the file and
line where there is one, and what to do; it never carries a secret's value.
"""
