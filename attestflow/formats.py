"""Model file formats, told apart by content, and the rule of which ones may be loaded.

Pickle-based files (torch ``.pt``/``.pth``/``.bin``, ``.pkl``, joblib) run code when loaded,
so they are refused before anything opens them with a pickle reader; a file extension is
only a name, so detection reads the bytes. Only safetensors (weights) and ONNX (models) load
by default. An explicit import of a pickle checkpoint is scanned first and read with
``torch.load(weights_only=True)`` only.
"""

from __future__ import annotations

import json
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from attestflow.errors import BadInputError


class Format(StrEnum):
    """What a model file is, by content."""

    SAFETENSORS = "safetensors"
    ONNX = "onnx"
    PICKLE = "pickle"
    TORCH_ZIP = "torch-zip (pickle inside)"
    JOBLIB = "joblib (compressed pickle)"
    UNKNOWN = "unknown"


SAFE_WEIGHTS = {Format.SAFETENSORS}
PICKLE_BASED = {Format.PICKLE, Format.TORCH_ZIP, Format.JOBLIB}


def _is_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    return header_len > 1 and 8 + header_len <= size and head[8:9] == b"{"


def _looks_like_pickle(head: bytes) -> bool:
    # Protocol 2+ starts with PROTO (0x80) and the version; protocols 0/1 start with
    # MARK/EMPTY_* opcodes followed by more opcodes, and end with STOP ('.').
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return True
    return (
        len(head) >= 2
        and head[0:1] in (b"(", b"}", b"]", b")")
        and head[1:2] in (b"d", b"l", b"t", b"c", b"(")
    )


def _is_onnx(path: Path) -> bool:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # protobuf raises DecodeError and others for non-ONNX bytes
        return False
    return model.ir_version > 0 and len(model.graph.node) > 0


def detect_format(path: Path) -> Format:
    """The format of the file at `path`, from its bytes (the extension is ignored)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(4096)
    if _is_safetensors(head, size):
        with open(path, "rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            try:
                json.loads(f.read(header_len))
                return Format.SAFETENSORS
            except ValueError:
                pass
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as z:
                if any(n.endswith(".pkl") or "/data/" in n for n in z.namelist()):
                    return Format.TORCH_ZIP
        except zipfile.BadZipFile:
            pass
        return Format.UNKNOWN
    if _looks_like_pickle(head):
        return Format.PICKLE
    if head[:1] == b"\x78":
        try:
            if _looks_like_pickle(zlib.decompressobj().decompress(head, 16)):
                return Format.JOBLIB
        except zlib.error:
            pass
    if _is_onnx(path):
        return Format.ONNX
    return Format.UNKNOWN


@dataclass(frozen=True)
class PickleImport:
    """An explicitly allowed import of a pickle-based checkpoint, for the record."""

    source: Path
    source_format: str
    scanner: str
    scan_findings: int
    converted_to: Path


def scan_pickle(path: Path) -> tuple[str, list[str]]:
    """Scan a pickle-based file with picklescan; returns (scanner, dangerous globals found)."""
    from picklescan.scanner import SafetyLevel, scan_file_path

    result = scan_file_path(str(path))
    found = [f"{g.module}.{g.name}" for g in result.globals if g.safety == SafetyLevel.Dangerous]
    if result.scan_err:
        found.append("scan error: the file could not be fully parsed")
    return "picklescan", found


def require_safe_weights(
    path: Path,
    *,
    allow_pickle_import: bool,
    convert_dir: Path,
    convert: Callable[[dict[str, Any], Path], None],
) -> tuple[Path, PickleImport | None]:
    """A safetensors path for `path`, refusing pickle unless explicitly allowed (then scanned and converted).

    Raises `BadInputError` naming the file and the reason; nothing here unpickles a file
    that was not allowed and scanned clean.
    """
    if not path.is_file():
        raise BadInputError(f"checkpoint not found: {path}")
    fmt = detect_format(path)
    if fmt in SAFE_WEIGHTS:
        return path, None
    if fmt not in PICKLE_BASED:
        raise BadInputError(f"{path}: not a safetensors checkpoint (content looks {fmt.value}); refused")
    if not allow_pickle_import:
        raise BadInputError(
            f"{path}: refused: it is a {fmt.value} file, which can run code when loaded; "
            "convert it to safetensors, or set fine_tune.allow_pickle_import to scan and import it"
        )
    scanner, findings = scan_pickle(path)
    if findings:
        raise BadInputError(f"{path}: refused: {scanner} found dangerous imports: {', '.join(findings)}")
    import torch

    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only raises UnpicklingError for anything but tensors
        raise BadInputError(f"{path}: refused by torch.load(weights_only=True): {e}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BadInputError(f"{path}: expected a state dict of tensors")
    convert_dir.mkdir(parents=True, exist_ok=True)
    out = convert_dir / (path.stem + ".imported.safetensors")
    convert(state, out)
    return out, PickleImport(path, fmt.value, scanner, 0, out)


def read_weights(path: Path, arch: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The tensors and metadata of a safetensors file written for architecture `arch`.

    A file that is not safetensors, or was written for another architecture, is `BadInputError`.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except Exception as e:  # safetensors raises several types for a non-safetensors file
        raise BadInputError(f"{path} is not a readable safetensors checkpoint: {e}") from None
    if meta.get("arch") != arch:
        raise BadInputError(f"{path}: not a {arch} checkpoint (arch={meta.get('arch')!r})")
    return state, meta
