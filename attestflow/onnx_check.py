"""The one ONNX content check: what `attestflow verify`, the format gate, promotion and rollback all run.

A model file is judged by its content, not its name, and every part of it that a runtime
would read counts: the main graph, each subgraph at any depth (``If`` branches, ``Loop`` and
``Scan`` bodies, any GRAPH or GRAPHS attribute), the graphs of training info, and the body of
every model-local function. An operator outside the allowed domains means code outside ONNX
Runtime's own kernels; external tensor data whose location is absolute or leads outside the
model's folder would make a loader read any file. Two copies of these rules once disagreed
(verify read only the top-level graph), so a nested custom operator passed one and failed the
other; there is now this one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx


@dataclass(frozen=True)
class ModelFile:
    """What a content check looks at: the file, its parsed model and the allowed operator domains."""

    path: Path
    model: onnx.ModelProto
    allowed_domains: frozenset[str]
    """Normalized: the default domain is ``""`` whether the policy wrote ``""`` or ``ai.onnx``."""


ContentCheck = Callable[[ModelFile], list[str]]
"""A check returns the problems it found; an empty list passes."""


@dataclass(frozen=True)
class Finding:
    """The problems one named check found; none means it passed."""

    name: str
    problems: tuple[str, ...]


@dataclass(frozen=True)
class OnnxCheck:
    """The outcome of the ONNX content check on one file, check by check."""

    path: Path
    is_onnx: bool
    """Whether the file parses as an ONNX model with a graph; when not, no other check ran."""
    described: str
    """``ONNX IR 8, 12 nodes``, or why the file is not an ONNX model."""
    findings: tuple[Finding, ...]
    """One per check in `CHECKS`, in that order; empty when the file is not ONNX."""

    @property
    def ok(self) -> bool:
        """Whether the file is ONNX and every check passed."""
        return self.is_onnx and not self.problems

    @property
    def problems(self) -> list[str]:
        """Every problem found, in check order; only the description when the file is not ONNX."""
        if not self.is_onnx:
            return [self.described]
        return [p for f in self.findings for p in f.problems]


def _domain(domain: str) -> str:
    return "" if domain == "ai.onnx" else domain


def parse_onnx(path: Path) -> tuple[onnx.ModelProto | None, str]:
    """The parsed model (external data not loaded) and a description, or None and why it is not ONNX."""
    import onnx  # here, not at the top: `attestflow verify` starts faster without it

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf raises DecodeError, onnx raises several others
        return None, f"{path.name} does not parse as ONNX ({type(e).__name__}), so it is not an ONNX model"
    if model.ir_version < 1 or not model.opset_import or not model.graph.node or not model.graph.output:
        return None, (
            f"{path.name} parses but has no ONNX graph (no version, opset, nodes or outputs), "
            "so it is not an ONNX model"
        )
    return model, f"ONNX IR {model.ir_version}, {len(model.graph.node)} nodes"


def _subgraphs(attr: onnx.AttributeProto) -> list[onnx.GraphProto]:
    # By field, not by declared type: a graph hidden under another attribute type is still read.
    return ([attr.g] if attr.HasField("g") else []) + list(attr.graphs)


def _function_attributes(model: onnx.ModelProto) -> Iterator[onnx.AttributeProto]:
    for fn in model.functions:
        for node in fn.node:
            yield from node.attribute
        yield from fn.attribute_proto


def graphs(model: onnx.ModelProto) -> Iterator[onnx.GraphProto]:
    """Every graph of the model: the main one, training info's, and each subgraph at any depth."""
    stack = [model.graph]
    stack += [g for info in model.training_info for g in (info.initialization, info.algorithm)]
    stack += [g for attr in _function_attributes(model) for g in _subgraphs(attr)]
    while stack:
        graph = stack.pop()
        yield graph
        stack += [g for node in graph.node for attr in node.attribute for g in _subgraphs(attr)]


def nodes(model: onnx.ModelProto) -> Iterator[onnx.NodeProto]:
    """Every node of every graph and of every model-local function body."""
    for graph in graphs(model):
        yield from graph.node
    for fn in model.functions:
        yield from fn.node


def _sparse(sparse: onnx.SparseTensorProto) -> list[onnx.TensorProto]:
    return [sparse.values, sparse.indices]


def tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every stored tensor: initializers, sparse ones (values and indices) and tensor attributes, at any depth."""
    for graph in graphs(model):
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield from _sparse(sparse)
    attributes = [a for g in graphs(model) for n in g.node for a in n.attribute]
    for attr in attributes + list(_function_attributes(model)):
        if attr.HasField("t"):
            yield attr.t
        yield from attr.tensors
        if attr.HasField("sparse_tensor"):
            yield from _sparse(attr.sparse_tensor)
        for sparse in attr.sparse_tensors:
            yield from _sparse(sparse)


def operator_domains(m: ModelFile) -> list[str]:
    """Operator domains, used anywhere in the model or imported by it, that are not allowed.

    A node calling a model-local function is not judged by the function's domain, because the
    function is defined here and its body's nodes are checked like any other; a node of that
    domain naming anything else is judged. Opset imports are judged too (a domain the model
    asks the runtime for is a domain it expects kernels from), except the domains that hold
    model-local functions, which a model must import to call them.
    """
    local = {(fn.domain, fn.name, fn.overload) for fn in m.model.functions}
    used = {_domain(n.domain) for n in nodes(m.model) if (n.domain, n.op_type, n.overload) not in local}
    imports = list(m.model.opset_import) + [o for fn in m.model.functions for o in fn.opset_import]
    local_domains = {fn.domain for fn in m.model.functions}
    used |= {_domain(o.domain) for o in imports if o.domain not in local_domains}
    return [f"operator domain {d!r} is not allowed" for d in sorted(used - m.allowed_domains)]


def _escapes(location: str, folder: Path) -> bool:
    if "\x00" in location or PurePosixPath(location).is_absolute():
        return True
    windows = PureWindowsPath(location)
    if windows.is_absolute() or windows.drive:
        return True
    return not (folder / location).resolve().is_relative_to(folder)


def external_data(m: ModelFile) -> list[str]:
    """External tensor data whose location is missing, absolute or outside the model's folder."""
    import onnx

    folder = m.path.parent.resolve()
    problems = []
    for tensor in tensors(m.model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL and not tensor.external_data:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        if not location:
            problems.append(f"tensor {tensor.name!r} is stored as external data without a location")
        elif _escapes(location, folder):
            problems.append(
                f"tensor {tensor.name!r} reads external data from {location!r}, which escapes the model folder"
            )
    return problems


CHECKS: tuple[tuple[str, ContentCheck], ...] = (
    ("disallowed_domains", operator_domains),
    ("escaping_external_data", external_data),
)
"""The named checks, in order; a check added here is run by verify and by the format gate alike."""


def check_onnx(path: Path, *, allowed_domains: Iterable[str]) -> OnnxCheck:
    """Parse `path` as ONNX by content and run every check in `CHECKS` on it."""
    model, described = parse_onnx(path)
    if model is None:
        return OnnxCheck(path, False, described, ())
    m = ModelFile(path, model, frozenset(_domain(d) for d in allowed_domains))
    return OnnxCheck(path, True, described, tuple(Finding(name, tuple(check(m))) for name, check in CHECKS))
