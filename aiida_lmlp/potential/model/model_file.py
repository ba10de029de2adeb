"""The ``.lmlp`` model file: one safetensors file with a JSON configuration and a content hash.

Layout (format ``aiida-lmlp-model``, version 1; see ``docs/model-file.md``):

* a safetensors file (https://github.com/huggingface/safetensors): an 8-byte little-endian
  header length, a JSON header, then the raw tensor bytes. Loading never unpickles anything.
* the header's ``__metadata__`` holds four strings:
  ``format`` (``"aiida-lmlp-model"``), ``format_version`` (``"1"``), ``config`` (JSON: the
  descriptor parameters, elements, network shape, reference energies, test RMSEs and any
  training state that is not a tensor) and ``content_sha256``.
* ``content_sha256`` is the SHA-256 of the canonical content: the UTF-8 ``config`` string,
  then for every tensor in name order its name, dtype, shape and little-endian bytes. A file
  whose tensors or configuration were changed after saving fails to load.

Files are written atomically: to a temporary file in the same folder, flushed to disk, then
renamed over the target, so a crash while saving never leaves a half-written model.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from ...formats.atomic_files import write_atomically
from ...formats.errors import ModelFileError
from ...formats.model_header import parse_header

__all__ = ["FORMAT", "FORMAT_VERSION", "content_sha256", "read_model_file", "write_model_file"]

FORMAT = "aiida-lmlp-model"
FORMAT_VERSION = 1


def content_sha256(config_json: str, tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the canonical content of a model (configuration string and tensors)."""
    digest = hashlib.sha256()
    digest.update(config_json.encode("utf-8"))
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        digest.update(name.encode("utf-8"))
        digest.update(str(tensor.dtype).encode())
        digest.update(json.dumps(list(tensor.shape)).encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def write_model_file(path: str | os.PathLike, config: dict, tensors: dict[str, torch.Tensor]) -> str:
    """Write ``config`` and ``tensors`` to ``path`` atomically; returns the content SHA-256."""
    path = Path(path)
    config_json = json.dumps(config, sort_keys=True)
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    sha = content_sha256(config_json, tensors)
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "config": config_json,
        "content_sha256": sha,
    }
    payload = save_safetensors(tensors, metadata=metadata)
    write_atomically(path, payload, fsync=True)
    return sha


def read_model_file(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor], str]:
    """Read and verify a model file; returns ``(config, tensors, content_sha256)``.

    Raises :class:`ModelFileError` if the file is missing, truncated, of another format or
    version, or if its content no longer matches its SHA-256.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist")
    data = path.read_bytes()
    metadata = parse_header(data, path).get("__metadata__") or {}
    if metadata.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not an aiida-lmlp model file (format {metadata.get('format')!r})")
    version = metadata.get("format_version")
    if version != str(FORMAT_VERSION):
        raise ModelFileError(f"model file {path} has format version {version}; this version reads {FORMAT_VERSION}")
    try:
        tensors = load_safetensors(data)
    except Exception as error:  # safetensors raises its own error types for malformed payloads
        raise ModelFileError(f"model file {path} is truncated or corrupt: {error}") from None
    config_json = metadata.get("config", "")
    sha = content_sha256(config_json, tensors)
    if sha != metadata.get("content_sha256"):
        raise ModelFileError(
            f"model file {path} was altered: its content SHA-256 is {sha}, "
            f"the file records {metadata.get('content_sha256')}"
        )
    return json.loads(config_json), tensors, sha
