"""Read and verify a ``.lmlp`` model file without PyTorch.

The AiiDA daemon never imports torch, yet it must record a model's elements, members and
test RMSEs as node attributes and check the file against its content SHA-256. The
safetensors layout makes that possible with the standard library alone: an 8-byte
little-endian header length, a JSON header with each tensor's dtype, shape and byte range,
then the raw little-endian tensor bytes, which are exactly the bytes
:func:`aiida_lmlp.potential.model.model_file.content_sha256` hashes.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from aiida_lmlp.formats.errors import ModelFileError

__all__ = ["ModelHeader", "parse_header", "read_model_header"]

FORMAT = "aiida-lmlp-model"
FORMAT_VERSION = "1"

# safetensors dtype codes and the names torch gives them (str(torch.float64) == "torch.float64")
_TORCH_DTYPE_NAMES = {
    "F64": "torch.float64",
    "F32": "torch.float32",
    "F16": "torch.float16",
    "BF16": "torch.bfloat16",
    "I64": "torch.int64",
    "I32": "torch.int32",
    "I16": "torch.int16",
    "I8": "torch.int8",
    "U8": "torch.uint8",
    "BOOL": "torch.bool",
}


@dataclass(frozen=True)
class ModelHeader:
    """What a verified model file declares about itself."""

    path: Path
    config: dict
    content_sha256: str
    file_sha256: str  # SHA-256 of the file's bytes, as stored in a node repository
    tensor_names: tuple[str, ...]

    @property
    def has_training_state(self) -> bool:
        """True when the file carries an optimiser and selection state to continue training from."""
        return bool(self.config.get("training"))


def parse_header(data: bytes, path: Path) -> dict:
    """The JSON header of a safetensors file's bytes; :class:`ModelFileError` if truncated, corrupt or foreign.

    A safetensors file starts with the header's length (8 bytes) and the header, a JSON object:
    a file whose ninth byte is not ``{`` is no model file at all (an extxyz file, an image, ...),
    which is said as such rather than read as an absurd header length.
    """
    if len(data) > 8 and data[8:9] != b"{":
        raise ModelFileError(
            f"{path} is not an aiida-lmlp model file (nor any safetensors file: it starts with {bytes(data[:16])!r})"
        )
    if len(data) < 8:
        raise ModelFileError(f"model file {path} is truncated: {len(data)} bytes, not even a header")
    (length,) = struct.unpack("<Q", data[:8])
    if length > len(data) - 8:
        raise ModelFileError(
            f"model file {path} is truncated: the header announces {length} bytes, {len(data) - 8} remain"
        )
    try:
        return json.loads(data[8 : 8 + length])
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFileError(f"model file {path} has a corrupt header: {error}") from None


def read_model_header(path: str | os.PathLike) -> ModelHeader:
    """Read ``path``'s configuration and verify its content SHA-256, without torch.

    Raises :class:`ModelFileError` naming the file if it is missing, truncated, of another
    format or version, or altered since it was written.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist")
    data = path.read_bytes()
    header = parse_header(data, path)
    metadata = header.pop("__metadata__", None) or {}
    if metadata.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not an aiida-lmlp model file (format {metadata.get('format')!r})")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"model file {path} has format version {metadata.get('format_version')}; "
            f"this version reads {FORMAT_VERSION}"
        )
    (length,) = struct.unpack("<Q", data[:8])
    body = memoryview(data)[8 + length :]
    config_json = metadata.get("config", "")
    digest = hashlib.sha256(config_json.encode("utf-8"))
    for name in sorted(header):
        entry = header[name]
        begin, end = entry["data_offsets"]
        if end > len(body):
            raise ModelFileError(f"model file {path} is truncated: tensor {name} ends past the end of the file")
        dtype = _TORCH_DTYPE_NAMES.get(entry["dtype"])
        if dtype is None:
            raise ModelFileError(f"model file {path}: tensor {name} has unsupported dtype {entry['dtype']}")
        digest.update(name.encode("utf-8"))
        digest.update(dtype.encode())
        digest.update(json.dumps(list(entry["shape"])).encode())
        digest.update(body[begin:end])
    sha = digest.hexdigest()
    if sha != metadata.get("content_sha256"):
        raise ModelFileError(
            f"model file {path} was altered: its content SHA-256 is {sha}, "
            f"the file records {metadata.get('content_sha256')}"
        )
    try:
        config = json.loads(config_json)
    except json.JSONDecodeError as error:
        raise ModelFileError(f"model file {path} has a corrupt configuration: {error}") from None
    return ModelHeader(
        path=path,
        config=config,
        content_sha256=sha,
        file_sha256=hashlib.sha256(data).hexdigest(),
        tensor_names=tuple(sorted(header)),
    )
