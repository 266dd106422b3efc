"""The k×k kernels of the convolutions of an ONNX model, read as data through the ``onnx`` package.

Nothing of the model is run (no onnxruntime): the graph is parsed, and for every ``Conv`` node of the main
graph its weight input is looked up where ONNX exporters store it: a graph initializer, or a ``Constant``
node (PaddlePaddle's exporter, e.g. the PP-OCR models, stores every weight so), possibly behind ``Identity``
nodes. The conv's ``group`` and ``kernel_shape`` attributes come with it: a grouped or depthwise conv's
(out, in/groups, kh, kw) weight gives out·in/groups kernels. Weights computed by other nodes (e.g.
``DequantizeLinear`` in quantised models) are skipped with that reason. Subgraphs of ``If``/``Loop``/``Scan``
nodes are not searched; a note in the record counts them.

Tensors stored as external data are read from files named relative to the model's folder; a location that
is absolute or resolves outside that folder (``..``, a symlink out) refuses the whole model before any of it
is read.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path, PureWindowsPath

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import AttributeProto, GraphProto, TensorProto, helper, numpy_helper

from .source_layers import LayerCollector, SourceKernels, check_pin, read_source_file

MAX_IDENTITY_HOPS = 64


def _tensors(graph: GraphProto) -> Iterator[TensorProto]:
    """Every tensor stored in `graph` and its subgraphs: initializers and tensors in node attributes."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == AttributeProto.TENSOR:
                yield attr.t
            elif attr.type == AttributeProto.TENSORS:
                yield from attr.tensors
            elif attr.type == AttributeProto.SPARSE_TENSOR:
                yield from (attr.sparse_tensor.values, attr.sparse_tensor.indices)
            elif attr.type == AttributeProto.GRAPH:
                yield from _tensors(attr.g)
            elif attr.type == AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _tensors(g)


def _external_file(location: str, folder: Path, model: Path) -> Path:
    """The file an external-data `location` names, which must lie inside the model's `folder`."""
    if not location or os.path.isabs(location) or PureWindowsPath(location).is_absolute() \
            or PureWindowsPath(location).drive or location.startswith(("/", "\\")):
        raise ValueError(f"{model}: external data location {location!r} is not a path relative to the model's "
                         f"folder; refusing the model (only files inside {folder} are read)")
    target = (folder / location).resolve()
    if not target.is_relative_to(folder):
        raise ValueError(f"{model}: external data location {location!r} resolves outside the model's folder "
                         f"{folder}; refusing the model")
    return target


def _external_info(tensor: TensorProto) -> dict[str, str]:
    return {e.key: e.value for e in tensor.external_data}


def _check_external_data(graph: GraphProto, folder: Path, model: Path) -> int:
    """Refuse the model if any tensor's external data lies outside `folder`; the number of external tensors."""
    count = 0
    for tensor in _tensors(graph):
        if tensor.data_location == TensorProto.EXTERNAL:
            _external_file(_external_info(tensor).get("location", ""), folder, model)
            count += 1
    return count


def _array(tensor: TensorProto, folder: Path, model: Path) -> np.ndarray:
    """`tensor` as a NumPy array, its external data (if any) read from inside `folder`."""
    if tensor.data_location == TensorProto.EXTERNAL:
        info = _external_info(tensor)
        source = _external_file(info.get("location", ""), folder, model)
        offset, length = int(info.get("offset", 0)), info.get("length")
        try:
            with open(source, "rb") as f:
                f.seek(offset)
                raw = f.read(int(length)) if length is not None else f.read()
        except OSError as e:
            raise ValueError(f"{model}: cannot read external data of {tensor.name!r} from {source}: "
                             f"{e.strerror}") from None
        inline = TensorProto()
        inline.CopyFrom(tensor)
        del inline.external_data[:]
        inline.data_location = TensorProto.DEFAULT
        inline.raw_data = raw
        tensor = inline
    try:
        return numpy_helper.to_array(tensor)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{model}: tensor {tensor.name!r} cannot be read ({e})") from None


def _weight(name: str, initializers: dict[str, TensorProto], producers: dict[str, onnx.NodeProto],
            ) -> tuple[TensorProto | None, str]:
    """The stored tensor behind value `name` and where it was found, or None and why it has none."""
    path = []
    for _ in range(MAX_IDENTITY_HOPS):
        if name in initializers:
            return initializers[name], " <- ".join(path + ["initializer"])
        node = producers.get(name)
        if node is None:
            return None, "a graph input, not stored in the model"
        if node.op_type == "Identity" and node.domain in ("", "ai.onnx"):
            path.append("Identity")
            name = node.input[0]
            continue
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            value = next((a for a in node.attribute if a.name == "value"), None)
            if value is None:
                kinds = ", ".join(a.name for a in node.attribute)
                return None, f"a Constant holding {kinds or 'nothing'}, not a dense tensor"
            return value.t, " <- ".join(path + ["Constant"])
        return None, f"computed by a {node.op_type} node, not stored"
    return None, f"more than {MAX_IDENTITY_HOPS} Identity nodes deep"


def read_onnx_kernels(path: str | os.PathLike, kernel_size: int, sha256: str | None = None) -> SourceKernels:
    """The k×k kernels of every ``Conv`` of the ONNX model at `path` (see the module docstring).

    `sha256`, when a recipe pins the file, must match it. Raises ValueError with one line for a file that is
    not an ONNX model or whose external data lies outside its folder.
    """
    path = Path(path)
    data, digest = read_source_file(path, "ONNX model")
    check_pin(path, digest, sha256)
    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as e:
        raise ValueError(f"{path}: not an ONNX model ({type(e).__name__})") from None
    folder = path.resolve().parent
    graph = model.graph
    notes = []
    external = _check_external_data(graph, folder, path)
    if external:
        notes.append(f"{external} tensor(s) stored as external data inside {folder.name}/")
    initializers = {t.name: t for t in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    with_subgraphs = [n for n in graph.node
                      if any(a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS) for a in n.attribute)]
    if with_subgraphs:
        ops = sorted({n.op_type for n in with_subgraphs})
        notes.append(f"{len(with_subgraphs)} {'/'.join(ops)} node(s) hold subgraphs whose convolutions are not read")
    found = LayerCollector(kernel_size)
    owner: dict[str, str] = {}  # weight name -> the conv node that took it first
    for index, node in enumerate(graph.node):
        if node.op_type != "Conv" or node.domain not in ("", "ai.onnx"):
            continue
        label = node.name or f"Conv #{index}"
        if len(node.input) < 2 or not node.input[1]:
            found.skip(label, None, "Conv node without a weight input", node=label)
            continue
        weight_name = node.input[1]
        tensor, origin = _weight(weight_name, initializers, producers)
        if tensor is None:
            found.skip(weight_name, None, f"weight is {origin}", node=label)
            continue
        if weight_name in owner:
            found.skip(weight_name, tuple(tensor.dims), f"same weight as node {owner[weight_name]} (shared)",
                       node=label)
            continue
        owner[weight_name] = label
        weight = _array(tensor, folder, path)
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        declared = attrs.get("kernel_shape")
        if declared is not None and tuple(declared) != tuple(weight.shape[2:]):
            found.skip(weight_name, weight.shape, f"kernel_shape {list(declared)} disagrees with the weight",
                       node=label)
            continue
        found.add(weight_name, weight, int(attrs.get("group", 1)), node=label, stored_as=origin)
    return found.result(path, digest, "onnx", tuple(notes))
