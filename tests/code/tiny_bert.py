"""A tiny random BERT in MiniLM's layout, for text-adapter tests that must not wait for the real model."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


def tiny_bert(folder: Path) -> Path:
    """`folder` made a model folder: tiny random BertForMaskedLM weights (safetensors), its config, MiniLM's tokenizer."""
    from transformers import BertConfig, BertForMaskedLM

    from attestflow.adapters.text import default_model_dir

    folder.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copy(default_model_dir() / name, folder / name)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    BertForMaskedLM(config).save_pretrained(folder)
    return folder
