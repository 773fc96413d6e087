"""The one room that reads files from others: networks, checkpoints and weights.

Files are hostile until read. A file's kind is decided from its content, never its name
(:func:`identify`); each kind has one reader here, none of which runs code from the file
or lets what the file claims size an allocation:

- published pickles (NVlabs, the official ProGAN): :func:`read_pickle`, an allow-list of
  stand-ins;
- fastpgan's records (checkpoints since version 2): :func:`read_tree`, safetensors with
  JSON metadata, no pickle at all; :func:`write_tree` writes them;
- weights: :func:`read_tensors` (safetensors) and :func:`read_json` (their configs);
- older fastpgan checkpoints: :func:`read_torch_zip`, torch's weights-only unpickler with
  numpy's globals resolved to stand-ins;
- TorchScript (the Inception file): :func:`load_torchscript`, once the file is found to be
  a TorchScript archive.

Every refusal is a :class:`RefusedFileError` (a ValueError) naming the file and why.
"""

from fastpgan.files.kinds import Kind, RefusedFileError, identify
from fastpgan.files.pickles import (
    PersistentRecord,
    RefusedPickleError,
    TFNetwork,
    as_tensor,
    read_pickle,
)
from fastpgan.files.text import read_json
from fastpgan.files.torchzip import load_torchscript, read_torch_zip
from fastpgan.files.tree import read_tensors, read_tree, record_kind, write_tree

__all__ = ["Kind", "PersistentRecord", "RefusedFileError", "RefusedPickleError", "TFNetwork",
           "as_tensor", "identify", "load_torchscript", "read_json", "read_pickle",
           "read_tensors", "read_torch_zip", "read_tree", "record_kind", "write_tree"]
