"""Stage `validate_data`: the snapshot must pass a Great Expectations suite kept in configs/.

The suite is plain YAML (a name and a list of ``type``/``kwargs`` expectations, as Great
Expectations serialises them), so it is reviewed and versioned with the code. The run uses
an ephemeral GX context (nothing is written to a GX project folder) on the engine the config
and the data's size pick (attestflow/validation.py: whole table, chunks or Spark), and the
validation result is saved as JSON evidence beside the release, naming the engine.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task

from attestflow.config import ValidateDataConfig
from attestflow.records import DataValidationRecord, write_json
from attestflow.validation import run_suite


def validate_data(cfg: ValidateDataConfig, data_path: Path, out_dir: Path) -> DataValidationRecord:
    """Run the suite on the data; the record names every failing expectation and the engine."""
    outcome = run_suite(cfg, data_path)
    path = write_json(out_dir / "data_validation.json", outcome.to_json())
    return DataValidationRecord(
        suite=outcome.suite,
        success=outcome.success,
        evaluated=len(outcome.results),
        failed=outcome.failed,
        result_path=path,
        engine=outcome.engine,
    )


validate_data_task = task(name="validate_data")(validate_data)
