"""DVC stage `pretrain_base`: the base checkpoint that releases fine-tune from.

It stands in for a pretrained model a team would start from: a `TabularMLP` trained on the
prior population (``data/credit_prior.csv``), saved as safetensors.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import yaml

from attestflow.adapters.tabular import TabularAdapter
from attestflow.config import DataConfig, FineTuneConfig, ModelConfig
from attestflow.dataset import Split, read_table
from attestflow.tabular import TabularMLP, save_checkpoint
from attestflow.training.loop import train_in_memory
from tasks.generate_data import FEATURES


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the example's base checkpoint.")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--data", type=Path, default=Path("data/credit_prior.csv"))
    parser.add_argument("--out", type=Path, default=Path("data/base_model.safetensors"))
    args = parser.parse_args(argv)
    params = yaml.safe_load(args.params.read_text())["pretrain_base"]
    df = read_table(args.data)
    data = DataConfig(path=args.data, label="default", features=FEATURES)
    adapter = TabularAdapter(ModelConfig())
    split = Split(inputs=adapter.encode(df, data), y=df["default"].to_numpy(dtype="int64"), sensitive=None)
    torch.manual_seed(params["seed"])
    model = TabularMLP(len(FEATURES), tuple(params["hidden"]))
    adapter.prepare(model, split.inputs)
    cfg = FineTuneConfig(seed=params["seed"], lr=3e-3, amp=False, epochs=params["epochs"])
    train_in_memory(adapter, model, split, cfg)
    save_checkpoint(model, args.out, {"trained_on": str(args.data)})


if __name__ == "__main__":
    main()
