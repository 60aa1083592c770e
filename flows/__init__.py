"""Prefect flows that compose the release stages in `tasks/`, and the `attestflow` CLI."""
