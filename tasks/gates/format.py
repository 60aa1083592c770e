"""Gate `format`: only a well-formed ONNX model, runnable by a trusted runtime, is deployable.

The file is judged by its content, not its name: it must parse as an ONNX protobuf with a
graph (a pickle or a zip renamed ``.onnx`` does not), use only operator domains that the
policy allows (a custom domain means code outside ONNX Runtime's own kernels), and keep any
external tensor data inside the model's folder (a path like ``../../etc/passwd`` would make a
loader read outside it).

`CHECKS` is a list so that more checks (signature, provenance) can be appended; each takes
the parsed model and returns the problems it found, one decision per check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import onnx

from attestflow.policy import FormatPolicy, GatePolicy
from attestflow.records import GateDecision
from tasks.gates.decisions import bound, cannot_run, judge

if TYPE_CHECKING:
    from tasks.gates.evaluation import Evaluation

GATE = "format"


@dataclass(frozen=True)
class FormatInput:
    """What a format check looks at: the file, its parsed model and the policy."""

    path: Path
    model: onnx.ModelProto
    policy: FormatPolicy


FormatCheck = Callable[[FormatInput], list[str]]
"""A check returns the problems it found; an empty list passes."""


def parse_onnx(path: Path) -> tuple[onnx.ModelProto | None, str]:
    """The parsed model and a description, or None and why the file is not an ONNX model."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf raises DecodeError, onnx raises several others
        return None, f"{path.name} does not parse as ONNX: {type(e).__name__}"
    if model.ir_version < 1 or not model.opset_import or not model.graph.node or not model.graph.output:
        return None, f"{path.name} parses but has no ONNX graph (no version, opset, nodes or outputs)"
    return model, f"ONNX IR {model.ir_version}, {len(model.graph.node)} nodes"


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(attr.g)
            for sub in attr.graphs:
                yield from _graphs(sub)


def operator_domains(inp: FormatInput) -> list[str]:
    """Operator domains used by nodes, functions or opset imports that the policy does not allow."""
    allowed = {"" if d == "ai.onnx" else d for d in inp.policy.allowed_domains}
    used = {n.domain for g in _graphs(inp.model.graph) for n in g.node}
    used |= {o.domain for o in inp.model.opset_import}
    used |= {n.domain for f in inp.model.functions for n in f.node}
    used = {"" if d == "ai.onnx" else d for d in used}
    return [f"operator domain {d!r} is not allowed" for d in sorted(used - allowed)]


def external_data(inp: FormatInput) -> list[str]:
    """External tensor data whose path is absolute or leads outside the model's folder."""
    folder = inp.path.parent.resolve()
    problems = []
    for g in _graphs(inp.model.graph):
        for tensor in g.initializer:
            if tensor.data_location != onnx.TensorProto.EXTERNAL:
                continue
            location = next((e.value for e in tensor.external_data if e.key == "location"), "")
            target = (folder / location).resolve()
            if not location or Path(location).is_absolute() or not target.is_relative_to(folder):
                problems.append(
                    f"tensor {tensor.name!r} reads external data from {location!r}, outside the model folder"
                )
    return problems


CHECKS: list[tuple[str, FormatCheck]] = [
    ("disallowed_domains", operator_domains),
    ("escaping_external_data", external_data),
]


def findings(path: Path, policy: FormatPolicy) -> tuple[str, dict[str, list[str]] | None]:
    """A description of the file, and each check's problems by name (None when it is not ONNX)."""
    model, described = parse_onnx(path)
    if model is None:
        return described, None
    inp = FormatInput(path, model, policy)
    return described, {name: check(inp) for name, check in CHECKS}


def refusal(path: Path, policy: FormatPolicy) -> str | None:
    """Why the format gate refuses the file, or None; nothing refused here is given to ONNX Runtime."""
    described, problems = findings(path, policy)
    if problems is None:
        return described
    found = [p for ps in problems.values() for p in ps]
    return f"the format gate refused {path.name}: {'; '.join(found)}" if found else None


def gate(ev: Evaluation, policy: GatePolicy) -> list[GateDecision]:
    """The ONNX content decision, then one decision per check in `CHECKS`."""
    digest = str(policy.digest())
    described, problems = findings(ev.onnx_path, policy.format)
    content = bound("invalid_onnx", 0, "at_most")
    if problems is None:
        return [judge(GATE, content, 1, digest, note=described)] + [
            cannot_run(GATE, bound(name, 0, "at_most"), described, digest) for name, _ in CHECKS
        ]
    decisions = [judge(GATE, content, 0, digest, note=described)]
    for name, found in problems.items():
        decisions.append(judge(GATE, bound(name, 0, "at_most"), len(found), digest, note="; ".join(found)))
    return decisions
