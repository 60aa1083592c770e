"""Running a Great Expectations suite on the release's data, with the engine its size calls for.

Three engines decide the same on the same data. ``pandas`` reads the whole table and hands
it to GX (memory grows with the data: ~5 bytes per byte of CSV). ``chunked`` reads the file in
row chunks, runs GX on each and combines each expectation's result across chunks
(attestflow/validation_chunked.py), so memory is bounded by the chunk size. ``spark`` hands a
Spark DataFrame to GX's Spark datasource (attestflow/validation_spark.py). ``auto`` picks
chunked above ``auto_chunked_mb`` and pandas below it, or when the suite holds an expectation
that chunks cannot combine exactly (it says so in the log). Every engine returns the same
`SuiteOutcome`, and its evidence JSON has GX's result shape with the engine in ``meta``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attestflow.errors import BadInputError
from attestflow.yamlfile import read_yaml

if TYPE_CHECKING:
    from attestflow.config import ValidateDataConfig

log = logging.getLogger(__name__)

ENGINES = ("auto", "pandas", "chunked", "spark")


@dataclass(frozen=True)
class Suite:
    """An expectation suite as read from YAML: its name and each expectation's type and kwargs."""

    name: str
    expectations: list[tuple[str, dict[str, Any]]]


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation's verdict, whichever engine reached it."""

    type: str
    kwargs: dict[str, Any]
    success: bool
    result: dict[str, Any]
    exception: str | None = None

    @property
    def label(self) -> str:
        """``type(column)``, as the record and the audit log name a failing expectation."""
        column = self.kwargs.get("column")
        return f"{self.type}({column})" if column else self.type

    def to_json(self) -> dict[str, Any]:
        """GX's shape of one expectation result."""
        return {
            "success": self.success,
            "expectation_config": {"type": self.type, "kwargs": self.kwargs},
            "result": self.result,
            "exception_info": {
                "raised_exception": self.exception is not None,
                "exception_message": self.exception,
            },
        }


@dataclass(frozen=True)
class SuiteOutcome:
    """The whole suite's verdict: which engine ran it and each expectation's outcome, in suite order."""

    suite: str
    engine: str
    results: list[ExpectationOutcome]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        return all(r.success for r in self.results)

    @property
    def failed(self) -> list[str]:
        return [r.label for r in self.results if not r.success]

    def to_json(self) -> dict[str, Any]:
        """GX's shape of a suite validation result, with the engine and its details in ``meta``."""
        passed = sum(r.success for r in self.results)
        return {
            "success": self.success,
            "statistics": {
                "evaluated_expectations": len(self.results),
                "successful_expectations": passed,
                "unsuccessful_expectations": len(self.results) - passed,
            },
            "results": [r.to_json() for r in self.results],
            "meta": {"expectation_suite_name": self.suite, "engine": self.engine, **self.meta},
        }


def load_suite(path: Path) -> Suite:
    """Read and shape-check an expectation suite file."""
    spec = read_yaml(path, "expectation suite")
    if not isinstance(spec, dict) or not isinstance(spec.get("expectations"), list):
        raise BadInputError(f"{path}: expected keys 'name' and 'expectations' (a list)")
    expectations: list[tuple[str, dict[str, Any]]] = []
    for i, exp in enumerate(spec["expectations"]):
        if not isinstance(exp, dict) or "type" not in exp:
            raise BadInputError(f"{path}: expectations[{i}] needs a 'type'")
        expectations.append((str(exp["type"]), dict(exp.get("kwargs") or {})))
    suite = Suite(name=str(spec.get("name", path.stem)), expectations=expectations)
    for exp_type, kwargs in suite.expectations:
        gx_expectation(exp_type, kwargs, path)
    return suite


def gx_expectation(exp_type: str, kwargs: dict[str, Any], suite_path: Path | str) -> Any:
    """The GX expectation object; an unknown type or bad kwargs is bad input."""
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    try:
        return ExpectationConfiguration(type=exp_type, kwargs=kwargs).to_domain_obj()
    except Exception as e:  # GX raises several types for unknown or malformed expectations
        raise BadInputError(f"{suite_path}: invalid expectation {exp_type!r}: {e}") from None


class GxRunner:
    """One ephemeral GX context with the suite bound to a dataframe batch; `run` validates one frame."""

    def __init__(self, suite: Suite, kind: str, *, spark_persist: bool = False) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        logging.getLogger("great_expectations").setLevel(logging.WARNING)
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        sources = context.data_sources
        source = (
            sources.add_spark("snapshot", persist=spark_persist)
            if kind == "spark"
            else sources.add_pandas("snapshot")
        )
        batch = source.add_dataframe_asset("data").add_batch_definition_whole_dataframe("whole")
        objs = [gx_expectation(t, k, suite.name) for t, k in suite.expectations]
        gx_suite = context.suites.add(gx.ExpectationSuite(name=suite.name, expectations=objs))
        self._order = [e.id for e in gx_suite.expectations]
        self._definition = context.validation_definitions.add(
            gx.ValidationDefinition(data=batch, suite=gx_suite, name="release")
        )

    def run(self, frame: Any) -> list[ExpectationOutcome]:
        """Validate one dataframe (pandas or Spark); outcomes in suite order (GX reorders them)."""
        result = self._definition.run(batch_parameters={"dataframe": frame})
        outcomes = []
        order = {eid: i for i, eid in enumerate(self._order)}

        def position(r: Any) -> int:
            return order.get(r.expectation_config.id if r.expectation_config else None, 0)

        for r in sorted(result.results, key=position):
            conf = r.expectation_config
            kwargs = {k: v for k, v in (conf.kwargs if conf else {}).items() if k != "batch_id"}
            info = r.exception_info or {}
            raised = bool(info.get("raised_exception")) if isinstance(info, dict) else False
            outcomes.append(
                ExpectationOutcome(
                    type=conf.type if conf else "?",
                    kwargs=kwargs,
                    success=bool(r.success),
                    result=dict(r.result or {}),
                    exception=str(info.get("exception_message")) if raised else None,
                )
            )
        return outcomes


def choose_engine(cfg: ValidateDataConfig, data_path: Path, suite: Suite) -> str:
    """The engine to run: the configured one, or for ``auto`` chunked above the size threshold."""
    from attestflow.validation_chunked import not_combinable

    if cfg.engine != "auto":
        return cfg.engine
    size_mb = data_path.stat().st_size / 2**20
    if size_mb <= cfg.auto_chunked_mb:
        return "pandas"
    refused = not_combinable(suite)
    if refused:
        log.warning(
            "validate_data engine auto: %.0f MB is above auto_chunked_mb, but %s; validating the whole "
            "table in memory (pandas) instead (engine: spark runs it out of memory)",
            size_mb,
            refused,
        )
        return "pandas"
    return "chunked"


def run_suite(cfg: ValidateDataConfig, data_path: Path) -> SuiteOutcome:
    """Validate the data file with the suite on the engine `cfg` (and the data's size) picks."""
    from attestflow.dataset import read_table, require_data_file

    require_data_file(data_path)
    suite = load_suite(cfg.suite)
    engine = choose_engine(cfg, data_path, suite)
    if engine == "chunked":
        from attestflow.validation_chunked import validate_chunked

        return validate_chunked(suite, data_path, cfg.chunk_rows)
    if engine == "spark":
        from attestflow.validation_spark import validate_spark

        return validate_spark(suite, data_path, cfg)
    df = read_table(data_path)
    return SuiteOutcome(suite=suite.name, engine="pandas", results=GxRunner(suite, "pandas").run(df))
