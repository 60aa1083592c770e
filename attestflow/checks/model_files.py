"""No model, pickle or large binary file in git: DVC tracks those, by content hash, outside the repository.

A model file committed to git is unsigned, unversioned by the data pipeline and, when it is a
pickle, code that runs when someone loads it. A name is only a name, so each tracked file is
told apart by its bytes with the project's own format detection (`attestflow.formats`): a
pickle renamed ``.txt`` is still a pickle. Files DVC tracks are not in git and so not looked at.
"""

from __future__ import annotations

from fnmatch import fnmatch

from attestflow.checks.config import ModelFilesSettings
from attestflow.checks.core import CheckContext, Finding
from attestflow.checks.gitfiles import files_in_scope
from attestflow.formats import PICKLE_BASED, Format, detect_format

MODEL_FORMATS = {*PICKLE_BASED, Format.SAFETENSORS, Format.ONNX}
TRACK_WITH_DVC = "remove it from git (`git rm --cached`) and track it with DVC (`dvc add`)"


def _is_binary(head: bytes) -> bool:
    """Bytes that are not text: a NUL among the first kilobytes, as git itself decides."""
    return b"\0" in head


def run(ctx: CheckContext) -> list[Finding]:
    """A finding for each tracked model or pickle file, and each binary over ``max_bytes``."""
    settings = ModelFilesSettings.model_validate(ctx.settings)
    max_bytes, allow = settings.max_bytes, settings.allow
    findings = []
    for path in files_in_scope(ctx.root, ctx.base):
        if any(fnmatch(path, pattern) for pattern in allow):
            continue
        file = ctx.root / path
        fmt = detect_format(file)
        if fmt in MODEL_FORMATS:
            what = "can run code when loaded" if fmt in PICKLE_BASED else "belongs in the model registry"
            findings.append(
                Finding("model-files", f"a {fmt.value} model file ({what})", TRACK_WITH_DVC, path)
            )
            continue
        size = file.stat().st_size
        if size > max_bytes:
            with open(file, "rb") as f:
                binary = _is_binary(f.read(8000))
            if binary:
                findings.append(
                    Finding(
                        "model-files",
                        f"a binary file of {size} bytes, over model-files.max_bytes ({max_bytes})",
                        f"{TRACK_WITH_DVC}, or allow its path in model-files.allow",
                        path,
                    )
                )
    return findings
