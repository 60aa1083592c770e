"""`python -m attestflow.stack up|down|status`: what `make stack-up`, `stack-down` and `stack-status` run."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from attestflow.errors import UnavailableError
from attestflow.stack import DEFAULT_WORKSPACE, Stack, down, env_path, load, up


def _show(stack: Stack) -> None:
    for proc in stack.processes:
        state = "up" if stack.running()[proc.name] else "DOWN"
        print(f"  {proc.name:<11} {state:<5} 127.0.0.1:{proc.port:<6} pid {proc.pid:<8} log {proc.log}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m attestflow.stack", description=__doc__)
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--workspace", type=Path, default=DEFAULT_WORKSPACE, help="default: .attestflow")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            started = time.perf_counter()
            stack, already = up(args.workspace)
            took = time.perf_counter() - started
            print("the stack is already up:" if already else f"the stack is up in {took:.1f} s:")
            _show(stack)
            print(f"release on it: source {env_path(stack.workspace)} && attestflow run")
        elif args.command == "down":
            stopped = down(args.workspace)
            print(f"stopped: {', '.join(stopped)}" if stopped else "the stack is not running")
        else:
            found = load(args.workspace.resolve())
            if found is None:
                print("the stack is not running")
                return 1
            _show(found)
            return 0 if all(found.running().values()) else 1
    except UnavailableError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
