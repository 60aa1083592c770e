"""Prefect flows that compose the release stages in `tasks/`, and the `attestflow` CLI.

Flows only compose: they build the release context once (`attestflow.context`) and call the
stages of `tasks/` in order; logic and records live in `attestflow/`, one stage per module in
`tasks/`. `flows.release.run_release` is the release body, which the benchmark's bare script
also runs; `flows.promotion` is the promotion protocol it ends with; `flows.env_promote`
promotes a verified version from one environment into the next, ending with the same transaction.
"""
