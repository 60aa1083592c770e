"""Orchestration overhead and the unchanged re-run: the release flow against a bare script.

The bare script is the release flow's own body (`flows.release.run_release`) with each stage
a plain call instead of a Prefect task (`flows.stages.plain_stage`): the same stages, order,
config, data, approval, promotion and canary, so it cannot drift from the product. Each side gets its own
fresh DVC repo and workspace per run, because fine_tune resumes from checkpoints keyed by
the digest of its inputs and must not find the other side's. The two sides alternate, and
a warm-up run of each goes first so that neither pays the process's import costs alone.

The flow talks to a real ``prefect server start`` on a free local port ("API already
running", where the target applies). What a process pays once to start Prefect's temporary
API, when no API is configured, is measured on its own in fresh processes and reported
beside it. Per-stage overhead comes from timing each task from the flow's side (call to
return) and, in the same run, the stage function inside it. The server runs on the same
cores as the flow, so the CPU time it spends during each release is recorded too.

This module is also the child process that runs the flows: ``python -m
benchmarks.orchestration compare|startup|bare --result FILE``, so that Prefect reads its
settings from an environment set before it is imported. ``--quick`` runs only the bare script,
once, on tiny data (`quick_section`): a smoke test that it still releases end to end.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import psutil
import yaml

from benchmarks.common import (
    ROOT,
    child_env,
    free_port,
    make_workload,
    median,
    ratio,
    run_child,
    scratch,
    write_result,
)
from benchmarks.results import Figure, Section, Target

if TYPE_CHECKING:
    from prefect import Task

    from attestflow.caching import StageCache
    from attestflow.config import StageConfig
    from attestflow.outcomes import ReleaseSummary

P = ParamSpec("P")
R = TypeVar("R")


def bare_release(config_path: Path, times: dict[str, float]) -> ReleaseSummary:
    """The release flow's own body (`flows.release.run_release`), each stage a plain call instead of a task.

    Wall seconds of each stage call go into `times`.
    """
    from attestflow.context import open_release
    from flows.release import run_release
    from flows.stages import plain_stage

    def timed(t: Task[P, R], cfg: StageConfig, cache: StageCache | None = None) -> Callable[P, R]:
        call = plain_stage(t, cfg, cache)

        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            t0 = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                times[t.name] = time.perf_counter() - t0

        return run

    return run_release(open_release(config_path, None, flow_run_id=uuid.uuid4().hex), timed)


class StageClock:
    """Times each task of the release flow from the flow's side and, inside it, the stage function."""

    def __init__(self) -> None:
        self.outer: dict[str, float] = {}
        self.inner: dict[str, float] = {}

    def install(self) -> None:
        """Wrap `flows.release.stage` so every task it configures is timed."""
        import flows.release as rel

        original = rel.stage

        def timed_stage(task: Any, cfg: Any, cache: Any = None) -> Any:
            staged: Task[Any, Any] = original(task, cfg, cache)
            fn = staged.fn

            @functools.wraps(fn)
            def inner(*args: Any, **kwargs: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    self.inner[task.name] = time.perf_counter() - t0

            staged.fn = inner

            def outer(*args: Any, **kwargs: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return staged(*args, **kwargs)
                finally:
                    self.outer[task.name] = time.perf_counter() - t0

            return outer

        rel.stage = timed_stage  # type: ignore[assignment]

    def take(self) -> tuple[dict[str, float], dict[str, float]]:
        """The timings of the last run (outer, inner), cleared for the next."""
        out = (dict(self.outer), dict(self.inner))
        self.outer.clear()
        self.inner.clear()
        return out


def _compare(args: argparse.Namespace) -> dict[str, Any]:
    """Child: warm up, then alternate flow and bare releases on fresh repos; re-run each flow's repo."""
    work = Path(args.work)
    t0 = time.perf_counter()
    from prefect import flow

    import_s = time.perf_counter() - t0

    @flow(name="bench-noop")
    def noop() -> int:
        return 1

    t0 = time.perf_counter()
    noop()
    noop_first_s = time.perf_counter() - t0
    noop_s = []
    for _ in range(3):
        t0 = time.perf_counter()
        noop()
        noop_s.append(time.perf_counter() - t0)
    # The same without flow-run heartbeats: at exit the engine joins its heartbeat thread,
    # which sleeps in 1 s steps. (The setting cannot be unset from the environment.)
    # The same as `attestflow run` calls a flow: the body sends the heartbeats, the engine none.
    from flows.heartbeat import prompt_heartbeats

    noop_quiet_s = []
    with prompt_heartbeats():
        for _ in range(3):
            t0 = time.perf_counter()
            noop()
            noop_quiet_s.append(time.perf_counter() - t0)

    from flows.release import release

    template = make_workload(work / "template", rows=args.rows, epochs=args.epochs)
    clock = StageClock()
    clock.install()

    def fresh(name: str) -> Path:
        return template.copy_to(work / name).write_config()

    server = psutil.Process(args.server_pid) if args.server_pid else None

    def server_cpu() -> float:
        """CPU seconds the API server (and its workers) has used so far."""
        if server is None:
            return float("nan")
        procs = [server, *server.children(recursive=True)]
        return sum(p.cpu_times().user + p.cpu_times().system for p in procs)

    def run_flow(config: Path) -> dict[str, Any]:
        """One release flow, as `attestflow run` calls it (in a fresh process: nothing remembered in memory)."""
        from attestflow.aibom import validation_error

        validation_error.cache_clear()
        cpu = server_cpu()
        t0 = time.perf_counter()
        with prompt_heartbeats():
            summary = release(config_path=str(config))
        wall = time.perf_counter() - t0
        outer, inner = clock.take()
        resumed = summary.training.resumed_from_epoch
        return {
            "wall": wall,
            "outer": outer,
            "inner": inner,
            "resumed_from_epoch": resumed,
            "unchanged": summary.unchanged is not None,
            "server_cpu_s": server_cpu() - cpu,
        }

    def run_bare(config: Path) -> dict[str, Any]:
        times: dict[str, float] = {}
        cpu = server_cpu()
        t0 = time.perf_counter()
        bare_release(config, times)
        return {"wall": time.perf_counter() - t0, "stages": times, "server_cpu_s": server_cpu() - cpu}

    warm = {"flow": run_flow(fresh("warm-flow")), "bare": run_bare(fresh("warm-bare"))}
    # Two sides, each on its own fresh copy: the flow as `attestflow run` calls it and the bare
    # script (what the engine's own heartbeats cost shows in the empty flow runs above). The order
    # alternates from repeat to repeat; each flow is re-run unchanged right after.
    sides = ["flow", "bare"]
    runs = []
    for r in range(args.repeats):
        rec: dict[str, Any] = {"order": sides[r % 2 :] + sides[: r % 2]}
        for side in rec["order"]:
            config = fresh(f"{side}-{r}")
            if side == "bare":
                rec[side] = run_bare(config)
                continue
            rec[side] = run_flow(config)
            rec["rerun"] = run_flow(config)
        runs.append(rec)
    return {
        "import_prefect_s": import_s,
        "noop_flow_first_s": noop_first_s,
        "noop_flow_s": noop_s,
        "noop_flow_prompt_heartbeat_s": noop_quiet_s,
        "rows": template.rows,
        "epochs": template.epochs,
        "warm_up": warm,
        "runs": runs,
    }


def _quick_policy(folder: Path) -> Path:
    """The bundled gate policy without the thresholds a model trained briefly on tiny data cannot meet."""
    raw = yaml.safe_load((ROOT / "configs/gates.yaml").read_text())
    raw["run"] = [g for g in raw["run"] if g not in ("performance", "fairness")]
    path = folder / "gates-quick.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _bare(args: argparse.Namespace) -> dict[str, Any]:
    """Child: one bare release on a fresh workload, without any Prefect API."""
    workload = make_workload(Path(args.work) / "bare", rows=args.rows, epochs=args.epochs)
    config = workload.write_config(gates={"policy": str(_quick_policy(workload.root))})
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    summary = bare_release(config, times)
    return {
        "wall": time.perf_counter() - t0,
        "stages": times,
        "approved_by": summary.approval.approver if summary.approval else None,
        "promoted": summary.promotion.version if summary.promotion else None,
        "canary": summary.canary.reason if summary.canary else None,
    }


def _bare_run(args: argparse.Namespace) -> dict[str, Any]:
    """Child: one bare release of the workload at ``--config`` (a fresh process, as a user's script runs)."""
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    bare_release(args.config, times)
    return {"wall": time.perf_counter() - t0, "stages": times}


def _wall(cmd: list[str], env: dict[str, str], log: Path) -> float:
    """Wall seconds of the command `cmd`, from start to exit; its output goes to `log`."""
    t0 = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.run(  # noqa: S603 - this interpreter running the CLI or a benchmark child
            cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=600, check=False
        )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"{' '.join(cmd[1:4])} exited {proc.returncode}:\n{tail}")
    return wall


def cli_runs(work: Path, env: dict[str, str], pairs: int) -> dict[str, Any]:
    """`attestflow run` in fresh processes beside the bare script in fresh processes, and the CLI's start-up.

    No API URL is set: the first run starts the background server (`attestflow.local_server`), the
    later ones reuse it, as on a user's machine; it is stopped at the end. Each run gets a fresh
    copy of the workload (so no stage is served from a cache), all under one Prefect home.
    """
    from attestflow import local_server

    template = make_workload(work / "cli-template")
    home = work / "cli-prefect-home"
    base = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
    cli_env = dict(base, PREFECT_HOME=str(home), ATTESTFLOW_LOCAL_API="background")
    cli = [sys.executable, "-m", "flows.cli"]
    logs = work / "cli-logs"
    logs.mkdir(parents=True, exist_ok=True)

    def side(name: str, i: int) -> tuple[float, Path]:
        config = template.copy_to(work / f"cli-{name}-{i}").write_config()
        if name == "cli":
            cmd = [*cli, "run", "--config", str(config)]
        else:
            cmd = [sys.executable, "-m", "benchmarks.orchestration", "bare-run", "--config", str(config)]
            cmd += ["--result", str(logs / f"bare-{i}.json")]
        return _wall(cmd, cli_env if name == "cli" else base, logs / f"{name}-{i}.log"), config

    try:
        first, config = side("cli", 0)
        runs = []
        for i in range(1, pairs + 1):
            order = ["cli", "bare"] if i % 2 else ["bare", "cli"]
            rec: dict[str, Any] = {"order": order}
            for name in order:
                rec[name], made = side(name, i)
                config = made if name == "cli" else config
            runs.append(rec)
        commands = {
            "help": ["--help"],
            "version": ["--version"],
            "verify": ["verify", "models:/credit-default@champion", "--config", str(config)],
        }
        startup = {
            name: [_wall([*cli, *args], cli_env, logs / f"{name}-{k}.log") for k in range(2)]
            for name, args in commands.items()
        }
        python = [_wall([sys.executable, "-c", "pass"], base, logs / f"python-{k}.log") for k in range(2)]
    finally:
        local_server.stop(home)
    return {"first_cli_s": first, "runs": runs, "startup": startup, "python_s": python}


def _cli_figures(cli: dict[str, Any]) -> list[Figure]:
    runs, startup = cli["runs"], cli["startup"]
    run_s, bare_s = median([r["cli"] for r in runs]), median([r["bare"] for r in runs])
    python = median(cli["python_s"])
    figures = [
        Figure.of(
            "attestflow_run_vs_bare",
            "`attestflow run` as users start it (no API set: the background server, reused) vs bare script",
            median([r["cli"] / r["bare"] for r in runs]),
            "x",
            measured=f"{run_s:.2f} s vs {bare_s:.2f} s, both fresh processes (medians of {len(runs)}); "
            f"the first run, which starts the server: {cli['first_cli_s']:.2f} s",
            target=Target("<=", 1.10),
        )
    ]
    for name, label, goal in (
        ("help", "`attestflow --help`", 0.3),
        ("version", "`attestflow --version`", 0.3),
        ("verify", "`attestflow verify` of the released model", 1.5),
    ):
        figures.append(
            Figure.of(
                f"cli_{name}",
                f"{label} wall time",
                median(startup[name]),
                "s",
                measured=f"median of {len(startup[name])}; the interpreter alone (python -c pass) {python:.2f} s",
                target=Target("<=", goal),
            )
        )
    return figures


def _startup(args: argparse.Namespace) -> dict[str, Any]:
    """Child: the first flow call of a fresh process, which starts the temporary API when none is set."""
    t0 = time.perf_counter()
    from prefect import flow
    from prefect.settings import get_current_settings

    import_s = time.perf_counter() - t0

    @flow(name="bench-noop")
    def noop() -> int:
        return 1

    t0 = time.perf_counter()
    noop()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    noop()
    second = time.perf_counter() - t0
    api_url = get_current_settings().api.url
    return {"import_prefect_s": import_s, "first_flow_s": first, "second_flow_s": second, "api_url": api_url}


@contextmanager
def prefect_server(home: Path) -> Iterator[tuple[str, float, int]]:
    """A real ``prefect server start`` on a free local port; yields (API URL, seconds until healthy, pid)."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = child_env({"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    env.pop("PREFECT_API_URL", None)
    prefect_cli = Path(sys.executable).with_name("prefect")
    url = f"http://127.0.0.1:{port}/api"
    log = (home / "server.log").open("w")
    t0 = time.perf_counter()
    proc = subprocess.Popen(  # noqa: S603 - the venv's prefect server, no shell
        [str(prefect_cli), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--analytics-off"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"prefect server exited {proc.returncode}: see {home / 'server.log'}")
            if time.perf_counter() - t0 > 180:
                raise RuntimeError("prefect server did not answer /health within 180 s")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:  # noqa: S310 - http on localhost
                    if resp.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        yield url, time.perf_counter() - t0, proc.pid
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


def _stage_figures(runs: list[dict[str, Any]]) -> tuple[list[Figure], dict[str, Any]]:
    figures, per_stage = [], {}
    for name in runs[0]["flow"]["outer"]:  # every stage the flow ran, in order
        plain = [r["bare"]["stages"][name] for r in runs if name in r["bare"]["stages"]]
        outer = [r["flow"]["outer"][name] for r in runs if name in r["flow"]["outer"]]
        inner = [r["flow"]["inner"][name] for r in runs if name in r["flow"]["inner"]]
        wrap = [
            r["flow"]["outer"][name] - r["flow"]["inner"][name] for r in runs if name in r["flow"]["outer"]
        ]
        per_stage[name] = {
            "plain_s": median(plain),
            "flow_task_s": median(outer),
            "flow_inner_s": median(inner),
            "task_wrapper_s": median(wrap),
        }
        figures.append(
            Figure.of(
                f"stage_{name}",
                f"task wrapper around {name} (task wall - function inside it)",
                median(wrap) * 1000,
                "ms",
                measured=f"flow task {median(outer):.2f} s vs plain call {median(plain):.2f} s",
            )
        )
    return figures, per_stage


def quick_section(*, rows: int, epochs: int) -> Section:
    """One bare release on tiny data, in a child process with no Prefect API: the smoke test of the bare path."""
    started = time.perf_counter()
    with scratch("orchestration-quick") as work:
        env = child_env({"PREFECT_HOME": str(work / "prefect-home")})
        env.pop("PREFECT_API_URL", None)
        args = ["bare", "--work", str(work), "--rows", str(rows), "--epochs", str(epochs)]
        bare = run_child("benchmarks.orchestration", args, env=env)
    return Section(
        name="orchestration",
        title="Orchestration overhead and unchanged re-run",
        figures=[
            Figure.of(
                "bare_release",
                "the release body as a bare script (quick: one run, tiny data)",
                bare["wall"],
                "s",
                measured=f"approved by {bare['approved_by']}, promoted v{bare['promoted']}; "
                + ", ".join(f"{k} {v:.2f} s" for k, v in bare["stages"].items()),
            )
        ],
        details=bare,
        seconds=time.perf_counter() - started,
    )


def section(*, repeats: int, rows: int | None, epochs: int | None, cli_pairs: int = 2) -> Section:
    """Run the comparison, the temporary-API start-up and the CLI's runs, and turn them into figures."""
    started = time.perf_counter()
    with scratch("orchestration") as work:
        env = child_env({"PREFECT_HOME": str(work / "client-home")})
        env.pop("PREFECT_API_URL", None)
        startup_env = dict(env, PREFECT_HOME=str(work / "temporary-api-home"))
        startup = [run_child("benchmarks.orchestration", ["startup"], env=startup_env) for _ in range(2)]
        with prefect_server(work / "server-home") as (url, server_s, server_pid):
            env["PREFECT_API_URL"] = url
            with_api = run_child("benchmarks.orchestration", ["startup"], env=env)
            args = ["compare", "--work", str(work / "runs"), "--repeats", str(repeats)]
            args += ["--server-pid", str(server_pid)]
            if rows:
                args += ["--rows", str(rows)]
            if epochs:
                args += ["--epochs", str(epochs)]
            compare = run_child("benchmarks.orchestration", args, env=env, timeout_s=1200)
        cli = cli_runs(work, env, cli_pairs) if cli_pairs else None

    runs = compare["runs"]
    flow = median([r["flow"]["wall"] for r in runs])
    bare = median([r["bare"]["wall"] for r in runs])
    rerun = median([r["rerun"]["wall"] for r in runs])
    pair_ratio = median([r["flow"]["wall"] / r["bare"]["wall"] for r in runs])
    rerun_ratio = median([r["rerun"]["wall"] / r["flow"]["wall"] for r in runs])
    # Prefect's own time, from one run: flow wall minus the stage functions inside it, less what
    # the bare script spends outside its stage calls (config, git revision, JSON evidence).
    prefect_own = median(
        [
            (r["flow"]["wall"] - sum(r["flow"]["inner"].values()))
            - (r["bare"]["wall"] - sum(r["bare"]["stages"].values()))
            for r in runs
        ]
    )
    temp_api = startup[1]["first_flow_s"] - with_api["first_flow_s"]
    stage_figs, per_stage = _stage_figures(runs)
    wrappers = [v["task_wrapper_s"] for v in per_stage.values()]
    rerun_stages = {
        name: median([r["rerun"]["outer"].get(name, float("nan")) for r in runs]) for name in per_stage
    }
    top = sorted(rerun_stages.items(), key=lambda kv: -kv[1])[:3]
    outside = median([r["rerun"]["wall"] - sum(r["rerun"]["outer"].values()) for r in runs])
    cached = [k for k in ("validate_data", "fine_tune", "export_onnx", "validate_onnx") if k in rerun_stages]
    n = len(runs)
    figures = [
        Figure.of(
            "flow_vs_bare",
            "release flow (as `attestflow run` calls it) vs bare script (Prefect API already running)",
            pair_ratio,
            "x",
            measured=f"{flow:.2f} s vs {bare:.2f} s (medians of {n})",
            target=Target("<=", 1.05),
        ),
        Figure.of(
            "prefect_own_time",
            "Prefect's own time per release (flow wall - stage functions, less the script's own)",
            prefect_own,
            "s",
            measured=f"{100 * ratio(prefect_own, bare):.1f}% of the bare script",
        ),
        Figure.of(
            "server_cpu",
            "CPU the local API server used during one release (same 2 cores)",
            median([r["flow"]["server_cpu_s"] for r in runs]),
            "s",
            measured=f"{median([r['bare']['server_cpu_s'] for r in runs]):.2f} s during a bare script; "
            f"stage functions ran {median([sum(r['flow']['inner'].values()) for r in runs]):.2f} s in the flow "
            f"vs {median([sum(r['bare']['stages'].values()) for r in runs]):.2f} s bare",
        ),
        Figure.of(
            "empty_flow_run",
            "an empty flow run (API running): Prefect's fixed cost per flow run",
            median(compare["noop_flow_s"]),
            "s",
            measured="median of 3, after a first call of "
            f"{compare['noop_flow_first_s']:.2f} s; each task adds ~{1000 * median(wrappers):.0f} ms; "
            f"{median(compare.get('noop_flow_prompt_heartbeat_s') or [float('nan')]):.2f} s with the heartbeats "
            "sent by the flow body, as `attestflow run` does (the engine joins its heartbeat thread, which "
            "sleeps in 1 s steps)",
        ),
        Figure.of(
            "temporary_api_startup",
            "fixed cost per process: Prefect's temporary API (no API configured)",
            temp_api,
            "s",
            measured=(
                f"first flow call {startup[1]['first_flow_s']:.2f} s without an API "
                f"vs {with_api['first_flow_s']:.2f} s with one; "
                f"{startup[0]['first_flow_s'] - with_api['first_flow_s']:.1f} s the very first time (new database)"
            ),
        ),
        Figure.of(
            "flow_with_temporary_api_vs_bare",
            "release flow incl. temporary API start-up vs bare script",
            ratio(flow + temp_api, bare),
            "x",
            measured=f"{flow + temp_api:.2f} s vs {bare:.2f} s",
        ),
        Figure.of(
            "server_startup",
            "`prefect server start` until /health answers (once per machine)",
            server_s,
            "s",
        ),
        *(_cli_figures(cli) if cli else []),
        *stage_figs,
        Figure.of(
            "rerun_vs_first",
            "unchanged re-run vs first release (flow, API running)",
            rerun_ratio,
            "x",
            measured=f"{rerun:.2f} s vs {flow:.2f} s; served as an unchanged release (verified champion, "
            f"nothing after registration) in {sum(bool(r['rerun'].get('unchanged')) for r in runs)} of {n}; "
            "most of it: "
            + ", ".join(f"{k} {v:.1f} s" for k, v in top)
            + f", the flow run outside its stages {outside:.1f} s; cached stages took "
            + f"{sum(rerun_stages[k] for k in cached):.2f} s together ({', '.join(cached)})",
            target=Target("<=", 0.10),
        ),
    ]
    details = {
        "repeats": n,
        "rows": compare["rows"],
        "epochs": compare["epochs"],
        "flow_s": [r["flow"]["wall"] for r in runs],
        "bare_s": [r["bare"]["wall"] for r in runs],
        "rerun_s": [r["rerun"]["wall"] for r in runs],
        "per_stage": per_stage,
        "rerun_per_stage_s": rerun_stages,
        "rerun_resumed_from_epoch": [r["rerun"]["resumed_from_epoch"] for r in runs],
        "prefect_server_startup_s": server_s,
        "temporary_api": {"fresh_home": startup[0], "existing_home": startup[1], "with_api": with_api},
        "import_prefect_s": compare["import_prefect_s"],
        "cli": cli,
        "warm_up": compare["warm_up"],
        "runs": runs,
    }
    return Section(
        name="orchestration",
        title="Orchestration overhead and unchanged re-run",
        figures=figures,
        details=details,
        seconds=time.perf_counter() - started,
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point of the child process."""
    parser = argparse.ArgumentParser(description="Release flow vs bare script (child process).")
    parser.add_argument("mode", choices=["compare", "startup", "bare", "bare-run"])
    parser.add_argument("--config", type=Path, help="bare-run: the workload's release config")
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--work", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--server-pid", type=int, help="the API server's pid, to count its CPU time")
    args = parser.parse_args(argv)
    from attestflow.workspace import quiet_third_parties

    quiet_third_parties()
    modes = {"compare": _compare, "startup": _startup, "bare": _bare, "bare-run": _bare_run}
    write_result(args.result, modes[args.mode](args))


if __name__ == "__main__":
    main()
