"""Models and data planted to make each gate say no, and the good model they are made from.

The good model is a `TabularMLP` trained for a few seconds on generated credit data; the bad
ones are edits of it (zeroed weights, extra ONNX nodes, padding, a custom operator) or tiny
ONNX graphs built by hand, so every gate is tested on an ONNX file run by ONNX Runtime.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
import torch
from onnx import TensorProto, helper, numpy_helper

from attestflow.adapters.tabular import TabularAdapter
from attestflow.config import DataConfig, ExportOnnxConfig, FineTuneConfig, ModelConfig
from attestflow.dataset import Split, split_table
from attestflow.policy import GatePolicy, load_policy
from attestflow.records import DataValidationRecord
from attestflow.tabular import TabularMLP, save_checkpoint
from attestflow.training.loop import train_in_memory
from tasks.export_onnx import export_onnx
from tasks.gates.evaluation import Baseline, Evaluation, evaluation
from tasks.generate_data import FEATURES, generate

ROOT = Path(__file__).resolve().parents[2]
TABULAR = TabularAdapter(ModelConfig())
PASSED_SUITE = DataValidationRecord(
    suite="credit", success=True, evaluated=23, failed=[], result_path=Path("x")
)


def bundled_policy(**changes: Any) -> GatePolicy:
    """The policy in configs/gates.yaml, with top-level sections replaced by `changes`."""
    policy = load_policy(ROOT / "configs/gates.yaml")
    return GatePolicy.model_validate({**policy.model_dump(), **changes})


def train_model(train: Split, seed: int, epochs: int = 8, n_classes: int = 2) -> TabularMLP:
    """A `TabularMLP` of `n_classes` classes trained from scratch on `train`, fixed by `seed`."""
    torch.manual_seed(seed)
    model = TabularMLP(train.x.shape[1], n_classes=n_classes)
    TABULAR.prepare(model, train.inputs)
    cfg = FineTuneConfig(seed=seed, batch_size=64, lr=3e-3, epochs=epochs)
    train_in_memory(TABULAR, model, train, cfg)
    return model


def export(model: TabularMLP, folder: Path, data: DataConfig) -> tuple[Path, Path]:
    """Save `model` as safetensors and export it to ONNX in `folder`; returns (onnx, checkpoint)."""
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = folder / "model.safetensors"
    save_checkpoint(model, checkpoint)
    return export_onnx(ExportOnnxConfig(), checkpoint, folder, data).onnx_path, checkpoint


def torch_logits(model: TabularMLP, x: np.ndarray) -> np.ndarray:
    """The model's logits in torch."""
    with torch.no_grad():
        return np.asarray(model(torch.from_numpy(x)).numpy())


@dataclass(frozen=True)
class Lab:
    """Generated credit data, its split, and a good model exported to ONNX."""

    root: Path
    data: DataConfig
    table: pd.DataFrame
    train: Split
    held_out: Split
    good: TabularMLP
    good_onnx: Path
    good_checkpoint: Path

    def evaluate(self, onnx_path: Path, **kw: Any) -> Evaluation:
        """The evaluation of `onnx_path` on the lab's held-out rows (no baseline unless given)."""
        kw.setdefault("baseline", Baseline("champion", None))
        kw.setdefault("data_validation", PASSED_SUITE)
        return evaluation(onnx_path, self.data, self.table, self.held_out, TABULAR, **kw)


def make_lab(root: Path) -> Lab:
    """Generate the data, train the good model and export it."""
    root.mkdir(parents=True, exist_ok=True)
    table = generate(3000, seed=3)
    path = root / "credit.csv"
    table.to_csv(path, index=False)
    data = DataConfig(path=path, label="default", features=FEATURES, sensitive="group")
    table = pd.read_csv(path)
    train, held_out = split_table(table, data, TABULAR)
    good = train_model(train, seed=0)
    onnx_path, checkpoint = export(good, root / "good", data)
    return Lab(root, data, table, train, held_out, good, onnx_path, checkpoint)


SPECIES = ["cat", "dog", "emu"]
"""The classes of the generated three-class table, in class order (sorted, as inferred)."""
SPECIES_FEATURES = ["f0", "f1", "f2", "f3"]


def species_table(rows: int, seed: int) -> pd.DataFrame:
    """Three overlapping clusters of four numeric features labelled with strings, and a group column."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, rows)
    centers = np.array([[0.0, 0.0, 0.0, 0.0], [2.0, 2.0, 0.0, 0.0], [0.0, 2.0, 2.0, 0.0]])
    x = centers[y] + rng.normal(size=(rows, 4))
    table = pd.DataFrame(x.round(4), columns=SPECIES_FEATURES)
    return table.assign(species=np.array(SPECIES)[y], group=rng.choice(["A", "B"], rows))


def make_species_lab(root: Path) -> Lab:
    """A three-class lab: generated species data with string labels, and a good model exported to ONNX."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "species.csv"
    species_table(1200, seed=4).to_csv(path, index=False)
    data = DataConfig(path=path, label="species", features=SPECIES_FEATURES, sensitive="group")
    table = pd.read_csv(path)
    train, held_out = split_table(table, data, TABULAR)
    good = train_model(train, seed=0, n_classes=3)
    onnx_path, checkpoint = export(good, root / "good", data)
    return Lab(root, data, table, train, held_out, good, onnx_path, checkpoint)


def ignoring_input(model: TabularMLP) -> TabularMLP:
    """A copy of `model` whose last layer is zeroed: its output is the bias (the last class), whatever the input."""
    last = model.net[-1]
    assert isinstance(last, torch.nn.Linear)
    copy = TabularMLP(model.mean.shape[0], model.hidden, last.out_features)
    copy.load_state_dict(model.state_dict())
    last = copy.net[-1]
    assert isinstance(last, torch.nn.Linear)
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
        last.bias[-1] = 1.0
    return copy.eval()


def _edited(source: Path, dest: Path, edit: Any) -> Path:
    model = onnx.load(str(source))
    edit(model)
    dest.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dest))
    return dest


def flipping_under_noise(source: Path, dest: Path, feature: int = 0, amplitude: float = 10.0) -> Path:
    """The model plus ``amplitude * sin(pi * x[feature])`` on the class-1 logit difference.

    The feature (age) holds whole numbers, where the sine is zero: clean accuracy is unchanged,
    but a fraction of a year of noise swings the logits by up to `amplitude` and flips outputs.
    """

    def edit(model: onnx.ModelProto) -> None:
        g = model.graph
        out = g.output[0].name
        for node in g.node:
            node.output[:] = [f"{o}_clean" if o == out else o for o in node.output]
        consts: dict[str, np.ndarray] = {
            "flip_starts": np.array([feature], np.int64),
            "flip_ends": np.array([feature + 1], np.int64),
            "flip_axes": np.array([1], np.int64),
            "flip_pi": np.array(math.pi, np.float32),
            "flip_sign": np.array([[-amplitude, amplitude]], np.float32),
        }
        g.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
        g.node.extend(
            [
                helper.make_node(
                    "Slice", [g.input[0].name, "flip_starts", "flip_ends", "flip_axes"], ["flip_x"]
                ),
                helper.make_node("Mul", ["flip_x", "flip_pi"], ["flip_angle"]),
                helper.make_node("Sin", ["flip_angle"], ["flip_sin"]),
                helper.make_node("Mul", ["flip_sin", "flip_sign"], ["flip_term"]),
                helper.make_node("Add", [f"{out}_clean", "flip_term"], [out]),
            ]
        )

    return _edited(source, dest, edit)


def padded(source: Path, dest: Path, extra_kb: int) -> Path:
    """The model with an unused initializer of `extra_kb` kilobytes of random floats."""

    def edit(model: onnx.ModelProto) -> None:
        pad = np.random.default_rng(0).standard_normal(extra_kb * 256).astype(np.float32)
        model.graph.initializer.append(numpy_helper.from_array(pad, "padding"))

    return _edited(source, dest, edit)


def with_custom_op(source: Path, dest: Path, domain: str = "com.example.untrusted") -> Path:
    """The model with one extra node of a custom operator domain on its output."""

    def edit(model: onnx.ModelProto) -> None:
        g = model.graph
        out = g.output[0].name
        for node in g.node:
            node.output[:] = [f"{out}_inner" if o == out else o for o in node.output]
        g.node.append(helper.make_node("RunShell", [f"{out}_inner"], [out], domain=domain))
        model.opset_import.append(helper.make_opsetid(domain, 1))

    return _edited(source, dest, edit)


def linear_onnx(dest: Path, weights: np.ndarray, bias: np.ndarray) -> Path:
    """A hand-built ONNX model ``logits = features @ weights + bias`` (weights: features × 2)."""
    n = weights.shape[0]
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["features", "w", "b"], ["logits"])],
        "linear",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", n])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        [
            numpy_helper.from_array(weights.astype(np.float32), "w"),
            numpy_helper.from_array(bias.astype(np.float32), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    onnx.checker.check_model(model)
    dest.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dest))
    return dest
