"""Stage `validate_data`: the snapshot must pass a Great Expectations suite kept in configs/.

The suite is plain YAML (a name and a list of ``type``/``kwargs`` expectations, as Great
Expectations serialises them), so it is reviewed and versioned with the code. The run
uses an ephemeral GX context: nothing is written to a GX project folder, and the full
validation result is saved as JSON evidence beside the release.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from prefect import task

from attestflow.config import ValidateDataConfig
from attestflow.dataset import read_table
from attestflow.errors import BadInputError
from attestflow.records import DataValidationRecord, write_json
from attestflow.yamlfile import read_yaml


def load_suite(path: Path) -> dict[str, Any]:
    """Read and shape-check an expectation suite file."""
    suite = read_yaml(path, "expectation suite")
    if not isinstance(suite, dict) or not isinstance(suite.get("expectations"), list):
        raise BadInputError(f"{path}: expected keys 'name' and 'expectations' (a list)")
    for i, exp in enumerate(suite["expectations"]):
        if not isinstance(exp, dict) or "type" not in exp:
            raise BadInputError(f"{path}: expectations[{i}] needs a 'type'")
    return suite


def _label(exp_type: str, kwargs: dict[str, Any]) -> str:
    column = kwargs.get("column")
    return f"{exp_type}({column})" if column else exp_type


def validate_data(cfg: ValidateDataConfig, data_path: Path, out_dir: Path) -> DataValidationRecord:
    """Run the suite on the data; the record names every failing expectation."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    spec = load_suite(cfg.suite)
    df = read_table(data_path)
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas("snapshot")
        .add_dataframe_asset("data")
        .add_batch_definition_whole_dataframe("whole")
    )
    expectations = []
    for exp in spec["expectations"]:
        try:
            conf = ExpectationConfiguration(type=exp["type"], kwargs=exp.get("kwargs") or {})
            expectations.append(conf.to_domain_obj())
        except Exception as e:  # GX raises several types for unknown or malformed expectations
            raise BadInputError(f"{cfg.suite}: invalid expectation {exp['type']!r}: {e}") from None
    name = str(spec.get("name", cfg.suite.stem))
    suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(data=batch, suite=suite, name="release")
    )
    result = definition.run(batch_parameters={"dataframe": df})
    failed = [
        _label(r.expectation_config.type, r.expectation_config.kwargs)
        for r in result.results
        if not r.success and r.expectation_config is not None
    ]
    path = write_json(out_dir / "data_validation.json", result.to_json_dict())
    return DataValidationRecord(
        suite=suite.name,
        success=bool(result.success),
        evaluated=len(result.results),
        failed=failed,
        result_path=path,
    )


validate_data_task = task(name="validate_data")(validate_data)
