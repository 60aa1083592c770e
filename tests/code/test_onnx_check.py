"""One ONNX content check: verify and the format gate refuse the same models, at any depth, with the same words."""

from __future__ import annotations

from pathlib import Path

import pytest
from onnx import FunctionProto, GraphProto, NodeProto, SparseTensorProto, TensorProto, ValueInfoProto, helper

from attestflow.onnx_check import check_onnx
from attestflow.verify import ALLOWED_ONNX_DOMAINS, verify_bundle
from tasks.gates import format as format_gate
from tests.code.planted import Lab, bundled_policy

EVIL = "com.evil"


def _value(name: str, elem: int = TensorProto.FLOAT, dims: tuple[int, ...] = (1,)) -> ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, list(dims))


def _external(name: str, location: str, elem: int = TensorProto.FLOAT) -> TensorProto:
    """A one-element tensor whose data is stored in the file at `location`."""
    tensor = helper.make_tensor(name, elem, [1], [1])
    tensor.ClearField("float_data")
    tensor.ClearField("int64_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value=location)
    return tensor


def _branch(name: str, *nodes: NodeProto, initializer: tuple[TensorProto, ...] = ()) -> GraphProto:
    """A subgraph whose last node writes its one output ``{name}_y``; the plain branch is an Identity of x."""
    body = list(nodes) or [helper.make_node("Identity", ["x"], [f"{name}_y"])]
    return helper.make_graph(body, name, [], [_value(f"{name}_y")], initializer=list(initializer))


def _if(then: GraphProto | None = None, otherwise: GraphProto | None = None) -> GraphProto:
    """The main graph: ``y = If(cond, then, otherwise)`` on the input x."""
    node = helper.make_node(
        "If",
        ["cond"],
        ["y"],
        then_branch=then or _branch("then"),
        else_branch=otherwise or _branch("else"),
    )
    return _main(node)


def _main(*nodes: NodeProto, sparse: tuple[SparseTensorProto, ...] = ()) -> GraphProto:
    inputs = [_value("x"), _value("cond", TensorProto.BOOL, ())]
    return helper.make_graph(list(nodes), "main", inputs, [_value("y")], sparse_initializer=list(sparse))


def _loop(body: GraphProto, output: str) -> NodeProto:
    return helper.make_node("Loop", ["", "cond"], [output], body=body)


def _loop_body(name: str, *nodes: NodeProto) -> GraphProto:
    """A loop body that keeps its condition and scans out the last node's output ``{name}_y``."""
    keep = helper.make_node("Identity", [f"{name}_cond"], [f"{name}_cond_out"])
    inputs = [_value(f"{name}_i", TensorProto.INT64, ()), _value(f"{name}_cond", TensorProto.BOOL, ())]
    outputs = [_value(f"{name}_cond_out", TensorProto.BOOL, ()), _value(f"{name}_y")]
    return helper.make_graph([keep, *nodes], name, inputs, outputs)


def _save(
    graph: GraphProto, tmp_path: Path, *, functions: tuple[FunctionProto, ...] = (), local: str = ""
) -> Path:
    """The model as the bundle's ``model.onnx``; `local` is the domain of its model-local functions."""
    opsets = [helper.make_opsetid("", 18)] + ([helper.make_opsetid(local, 1)] if local else [])
    model = helper.make_model(graph, opset_imports=opsets, functions=list(functions))
    path = tmp_path / "bundle" / "model.onnx"
    path.parent.mkdir(parents=True)
    path.write_bytes(model.SerializeToString())
    return path


def _refused_by_both(lab: Lab, path: Path, tmp_path: Path) -> str:
    """The problem text, after checking that verify and the format gate both refuse `path` with it."""
    verified = verify_bundle(path.parent, tmp_path / "absent.pub", check_data=False)
    by_verify = next(c for c in verified.checks if c.name == "format")
    assert not by_verify.ok
    evaluated = lab.evaluate(path)
    refused = [d for d in format_gate.gate(evaluated, bundled_policy()) if not d.passed]
    assert len(refused) == 1, refused
    assert by_verify.detail in refused[0].reason
    assert evaluated.problem == f"the format gate refused model.onnx: {by_verify.detail}"
    return by_verify.detail


def _passed_by_both(lab: Lab, path: Path, tmp_path: Path) -> None:
    verified = verify_bundle(path.parent, tmp_path / "absent.pub", check_data=False)
    by_verify = next(c for c in verified.checks if c.name == "format")
    assert by_verify.ok, by_verify.detail
    decisions = format_gate.gate(lab.evaluate(path), bundled_policy())
    assert all(d.passed for d in decisions), decisions


def test_a_clean_model_with_subgraphs_passes_verify_and_the_format_gate(lab: Lab, tmp_path: Path) -> None:
    _passed_by_both(lab, _save(_if(), tmp_path), tmp_path)


@pytest.mark.parametrize("branch", ["then", "else"])
def test_custom_domain_inside_an_if_branch_is_refused_by_verify_and_the_format_gate(
    lab: Lab, tmp_path: Path, branch: str
) -> None:
    evil = _branch(branch, helper.make_node("RunShell", ["x"], [f"{branch}_y"], domain=EVIL))
    graph = _if(then=evil) if branch == "then" else _if(otherwise=evil)
    assert (
        _refused_by_both(lab, _save(graph, tmp_path), tmp_path) == f"operator domain {EVIL!r} is not allowed"
    )


def test_custom_domain_inside_a_loop_body_two_levels_down_is_refused(lab: Lab, tmp_path: Path) -> None:
    inner = _loop_body("inner", helper.make_node("RunShell", ["x"], ["inner_y"], domain=EVIL))
    outer = _loop_body("outer", _loop(inner, "outer_y"))
    path = _save(_main(_loop(outer, "y")), tmp_path)
    assert _refused_by_both(lab, path, tmp_path) == f"operator domain {EVIL!r} is not allowed"


def test_an_initializer_in_a_subgraph_reading_outside_the_model_folder_is_refused(
    lab: Lab, tmp_path: Path
) -> None:
    add = helper.make_node("Add", ["x", "w"], ["then_y"])
    then = _branch("then", add, initializer=(_external("w", "../escape.bin"),))
    text = _refused_by_both(lab, _save(_if(then=then), tmp_path), tmp_path)
    assert text == "tensor 'w' reads external data from '../escape.bin', which escapes the model folder"


def test_a_constant_in_a_subgraph_reading_an_absolute_path_is_refused(lab: Lab, tmp_path: Path) -> None:
    constant = helper.make_node("Constant", [], ["c"], value=_external("c", "/etc/passwd"))
    otherwise = _branch("else", constant, helper.make_node("Add", ["x", "c"], ["else_y"]))
    text = _refused_by_both(lab, _save(_if(otherwise=otherwise), tmp_path), tmp_path)
    assert text == "tensor 'c' reads external data from '/etc/passwd', which escapes the model folder"


@pytest.mark.parametrize("part", ["values", "indices"])
def test_a_sparse_initializer_reading_outside_the_model_folder_is_refused(
    lab: Lab, tmp_path: Path, part: str
) -> None:
    values = (
        _external("s", "../escape.bin")
        if part == "values"
        else helper.make_tensor("s", TensorProto.FLOAT, [1], [1.0])
    )
    indices = (
        _external("s_indices", "../escape.bin", TensorProto.INT64)
        if part == "indices"
        else helper.make_tensor("s_indices", TensorProto.INT64, [1], [0])
    )
    sparse = helper.make_sparse_tensor(values, indices, [1])
    path = _save(_main(helper.make_node("Add", ["x", "s"], ["y"]), sparse=(sparse,)), tmp_path)
    assert "'../escape.bin', which escapes the model folder" in _refused_by_both(lab, path, tmp_path)


def _double(body: list[NodeProto] | None = None) -> FunctionProto:
    """A model-local function ``com.local.Double(x) = x + x``, or with another `body`."""
    body = body or [helper.make_node("Add", ["x", "x"], ["y"])]
    return helper.make_function("com.local", "Double", ["x"], ["y"], body, [helper.make_opsetid("", 18)])


def test_a_model_local_function_used_as_defined_passes(lab: Lab, tmp_path: Path) -> None:
    call = helper.make_node("Double", ["x"], ["y"], domain="com.local")
    path = _save(_main(call), tmp_path, functions=(_double(),), local="com.local")
    _passed_by_both(lab, path, tmp_path)


def test_an_operator_of_a_local_function_domain_that_is_not_defined_there_is_refused(
    lab: Lab, tmp_path: Path
) -> None:
    call = helper.make_node("Triple", ["x"], ["y"], domain="com.local")
    path = _save(_main(call), tmp_path, functions=(_double(),), local="com.local")
    assert _refused_by_both(lab, path, tmp_path) == "operator domain 'com.local' is not allowed"


def test_custom_domain_inside_a_branch_of_a_local_function_body_is_refused(lab: Lab, tmp_path: Path) -> None:
    evil = _branch("then", helper.make_node("RunShell", ["x"], ["then_y"], domain=EVIL))
    branch = helper.make_node("If", ["cond"], ["y"], then_branch=evil, else_branch=_branch("else"))
    call = helper.make_node("Double", ["x"], ["y"], domain="com.local")
    path = _save(_main(call), tmp_path, functions=(_double([branch]),), local="com.local")
    assert _refused_by_both(lab, path, tmp_path) == f"operator domain {EVIL!r} is not allowed"


def test_external_data_without_a_location_is_refused(tmp_path: Path) -> None:
    tensor = _external("w", "")
    del tensor.external_data[:]
    then = _branch("then", helper.make_node("Add", ["x", "w"], ["then_y"]), initializer=(tensor,))
    check = check_onnx(_save(_if(then=then), tmp_path), allowed_domains=ALLOWED_ONNX_DOMAINS)
    assert check.problems == ["tensor 'w' is stored as external data without a location"]
