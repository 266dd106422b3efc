"""Source readers that read data, never code: ONNX models, PyTorch state dicts and kernel arrays.

Real files come from the pinned wheels (fetched once per test session with pip, the only network use);
hostile and synthetic files are made here.
"""

from __future__ import annotations

import builtins
import io
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from training.array_kernels import read_array_kernels
from training.onnx_kernels import read_onnx_kernels
from training.pinned_wheels import (FACENET_PYTORCH, RAPIDOCR_ONNXRUNTIME, PinnedWheel, fetch_members, fetch_wheel,
                                    member_pins, wheel_members)
from training.source_layers import sha256_bytes
from training.source_readers import read_source_kernels
from training.state_dict_kernels import read_state_dict_kernels


def tree(folder: Path) -> list[str]:
    """Every path under `folder`, to check that a refusal wrote nothing."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def refused(call, *args, **kwargs) -> str:
    """The one-line ValueError message `call` raises."""
    with pytest.raises(ValueError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message
    return message


# --- real files from the pinned wheels ----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def wheels(tmp_path_factory) -> dict[str, dict[str, Path]]:
    """The pinned members of both wheels, downloaded by pip into a session cache (a failed download fails)."""
    folder = tmp_path_factory.mktemp("pinned-wheels")
    return {w.package: fetch_members(w, folder) for w in (FACENET_PYTORCH, RAPIDOCR_ONNXRUNTIME)}


def test_mtcnn_state_dicts_give_the_measured_kernel_counts(wheels):
    pins = member_pins(FACENET_PYTORCH)
    counts: dict[int, int] = {2: 0, 3: 0}
    for member, path in wheels["facenet-pytorch"].items():
        for k in counts:
            got = read_state_dict_kernels(path, k, sha256=pins[member])  # pinned: no trust flag needed
            counts[k] += got.kernels
            assert got.sha256 == pins[member] and got.format == "pytorch-state-dict"
            assert all(v.shape[1:] == (k, k) and v.dtype == torch.float32 for v in got.layers.values())
    assert counts == {2: 11_264, 3: 8_370}
    onet = read_state_dict_kernels(wheels["facenet-pytorch"]["facenet_pytorch/data/onet.pt"], 3,
                                   sha256=pins["facenet_pytorch/data/onet.pt"])
    assert list(onet.layers) == ["conv1", "conv2", "conv3"]
    assert onet.taken[0] == {"name": "conv1", "shape": [32, 3, 3, 3], "groups": None, "kernels": 96}
    assert {"name": "conv4", "shape": [128, 64, 2, 2], "reason": "2x2 kernels, not 3x3"} in onet.skipped


def test_ppocr_onnx_models_give_the_measured_kernel_counts(wheels):
    pins = member_pins(RAPIDOCR_ONNXRUNTIME)
    counts = {3: 0, 5: 0}
    non_square = 0
    for member, path in wheels["rapidocr-onnxruntime"].items():
        for k in counts:
            got = read_source_kernels(path, k, sha256=pins[member])
            counts[k] += got.kernels
            assert got.format == "onnx" and got.notes == ()
            assert {t["stored_as"] for t in got.taken} == {"Constant"}  # PP-OCR stores weights as Constant nodes
        non_square += got.kernels_by_shape.get("1x3", 0)
        assert any(s["reason"] == "non-square 1x3 kernels" for s in got.skipped) == ("rec" in member)
    assert counts == {3: 12_472, 5: 5_552}
    assert non_square == 86_400
    depthwise = [t for t in got.taken if t["groups"] > 1]
    assert depthwise and all(t["kernels"] == t["shape"][0] for t in depthwise)  # (out, 1, k, k): one kernel each


def test_a_version_pip_cannot_download_is_one_line_and_leaves_nothing(tmp_path):
    missing = PinnedWheel(FACENET_PYTORCH.package, "0.0.0", "0" * 64, "MIT", ())
    with pytest.raises(RuntimeError, match=r"^pip could not download facenet-pytorch==0\.0\.0: [^\n]*$"):
        fetch_wheel(missing, tmp_path)
    assert tree(tmp_path) == []


def test_a_wheel_or_member_that_is_not_the_pinned_one_is_refused_and_not_kept(wheels, tmp_path):
    wrong = PinnedWheel(FACENET_PYTORCH.package, FACENET_PYTORCH.version, "0" * 64, "MIT", FACENET_PYTORCH.members)
    assert "refusing" in refused(fetch_wheel, wrong, tmp_path)
    assert tree(tmp_path) == []
    archive = fetch_wheel(FACENET_PYTORCH, next(iter(wheels["facenet-pytorch"].values())).parents[3] / "downloads")
    bad_member = PinnedWheel(FACENET_PYTORCH.package, FACENET_PYTORCH.version, FACENET_PYTORCH.sha256, "MIT",
                             (("facenet_pytorch/data/pnet.pt", "1" * 64),))
    assert "refusing" in refused(wheel_members, bad_member, archive, tmp_path)
    assert tree(tmp_path) == []


# --- PyTorch state dicts --------------------------------------------------------------------------------------------
class CreatesAFile:
    """Pickles as a call of open(path, "w"): unpickling it in full would create the file."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return builtins.open, (str(self.path), "w")


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_a_pickle_that_calls_a_function_is_refused_and_never_runs(tmp_path, zip_format):
    marker = tmp_path / "created-by-the-pickle"
    buf = io.BytesIO()
    torch.save({"conv.weight": torch.zeros(2, 1, 3, 3), "payload": CreatesAFile(marker)}, buf,
               _use_new_zipfile_serialization=zip_format)
    data = buf.getvalue()
    hostile = tmp_path / "hostile.pt"
    hostile.write_bytes(data)
    before = tree(tmp_path)
    for options in ({"trust_unpinned_pickle": True}, {"sha256": sha256_bytes(data)}):
        message = refused(read_state_dict_kernels, hostile, 3, **options)
        assert "refused" in message and "open" in message and str(hostile) in message
        assert not marker.exists()
        assert tree(tmp_path) == before
    torch.load(io.BytesIO(data), weights_only=False)  # made above, so safe to show it is live: a full unpickle runs it
    assert marker.exists()


def test_an_unpinned_or_mismatched_pickle_is_not_even_parsed(tmp_path):
    path = tmp_path / "net.pt"
    torch.save({"conv.weight": torch.randn(4, 2, 3, 3)}, path)
    assert "--trust-unpinned-pickle" in refused(read_state_dict_kernels, path, 3)
    assert "pins" in refused(read_state_dict_kernels, path, 3, sha256="f" * 64)
    assert read_state_dict_kernels(path, 3, trust_unpinned_pickle=True).kernels == 8
    path.write_bytes(b"not a pickle" * 8)
    assert "weights-only loading failed" in refused(read_state_dict_kernels, path, 3, trust_unpinned_pickle=True)


def test_a_nested_state_dict_with_grouped_convs(tmp_path):
    grouped, dense = torch.randn(8, 2, 3, 3), torch.randn(6, 4, 5, 5)
    path = tmp_path / "ckpt.pth"
    torch.save({"epoch": 3, "optimizer": {"state": {}}, "state_dict": {
        "block.grouped.weight": grouped, "block.grouped.bias": torch.zeros(8), "head.weight": dense,
        "running_stats": torch.ones(1, 1, 3, 3), "int_conv.weight": torch.ones(2, 2, 3, 3, dtype=torch.int8)}}, path)
    got = read_source_kernels(path, 3, trust_unpinned_pickle=True)
    assert list(got.layers) == ["block.grouped"]
    assert torch.equal(got.layers["block.grouped"], grouped.reshape(-1, 3, 3))
    assert got.notes == ("state dict under key 'state_dict'",)
    reasons = {s["name"]: s["reason"] for s in got.skipped}
    assert reasons == {"head": "5x5 kernels, not 3x3", "running_stats": "4-D tensor not named ...weight",
                       "int_conv": "int8 values, not floating point (quantised?)"}
    assert got.kernels_by_shape == {"3x3": 20, "5x5": 24}
    assert "not a state dict" in refused(read_state_dict_kernels, _saved(tmp_path, [torch.zeros(1)]), 3,
                                         trust_unpinned_pickle=True)


def _saved(folder: Path, obj) -> Path:
    path = folder / "other.pt"
    torch.save(obj, path)
    return path


# --- ONNX -----------------------------------------------------------------------------------------------------------
def _conv(name: str, x: str, w: str, y: str, kernel: tuple[int, int] | None = None, group: int = 1) -> onnx.NodeProto:
    attrs = {"group": group} | ({"kernel_shape": list(kernel)} if kernel else {})
    return helper.make_node("Conv", [x, w], [y], name=name, **attrs)


def _model(nodes, initializers=(), path: Path | None = None) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)],
                              list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if path is not None:
        path.write_bytes(model.SerializeToString())
    return model


def test_onnx_weights_from_initializers_constants_and_identity_chains(tmp_path):
    rng = np.random.default_rng(0)
    w_init = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    w_const = rng.normal(size=(8, 2, 3, 3)).astype(np.float16)  # grouped: 4 groups of 2 input channels
    w_dw = rng.normal(size=(8, 1, 3, 3)).astype(np.float32)  # depthwise
    w_1x3 = rng.normal(size=(8, 8, 1, 3)).astype(np.float32)
    w_5 = rng.normal(size=(2, 8, 5, 5)).astype(np.float32)
    nodes = [
        _conv("c_init", "x", "w_init", "y1", (3, 3)),
        helper.make_node("Constant", [], ["w_const"], value=numpy_helper.from_array(w_const, "w_const")),
        _conv("c_group", "y1", "w_const", "y2", (3, 3), group=4),
        helper.make_node("Constant", [], ["w_dw_raw"], value=numpy_helper.from_array(w_dw, "w_dw_raw")),
        helper.make_node("Identity", ["w_dw_raw"], ["w_dw_id"]),
        helper.make_node("Identity", ["w_dw_id"], ["w_dw"]),
        _conv("c_dw", "y2", "w_dw", "y3", group=8),  # no kernel_shape attribute: the weight's shape
        _conv("c_1x3", "y3", "w_1x3", "y4", (1, 3)),
        helper.make_node("Mul", ["w_init", "w_init"], ["w_computed"]),
        _conv("c_computed", "y4", "w_computed", "y5"),
        _conv("c_shared", "y5", "w_init", "y6"),
        _conv("c_5x5", "y6", "w_5", "y7", (5, 5)),
        _conv("c_mislabelled", "y7", "w_odd", "y8", (5, 5)),
    ]
    path = tmp_path / "synthetic.onnx"
    _model(nodes, [numpy_helper.from_array(w_init, "w_init"), numpy_helper.from_array(w_1x3, "w_1x3"),
                   numpy_helper.from_array(w_5, "w_5"), numpy_helper.from_array(w_init, "w_odd")], path)
    got = read_onnx_kernels(path, 3)
    assert list(got.layers) == ["w_init", "w_const", "w_dw"]
    assert torch.equal(got.layers["w_init"], torch.from_numpy(w_init).reshape(-1, 3, 3))
    assert torch.equal(got.layers["w_const"], torch.from_numpy(w_const.astype(np.float32)).reshape(-1, 3, 3))
    assert [(t["groups"], t["kernels"], t["stored_as"]) for t in got.taken] == [
        (1, 12, "initializer"), (4, 16, "Constant"), (8, 8, "Identity <- Identity <- Constant")]
    reasons = {s["node"]: s["reason"] for s in got.skipped}
    assert reasons == {"c_1x3": "non-square 1x3 kernels", "c_computed": "weight is computed by a Mul node, not stored",
                       "c_shared": "same weight as node c_init (shared)", "c_5x5": "5x5 kernels, not 3x3",
                       "c_mislabelled": "kernel_shape [5, 5] disagrees with the weight"}
    assert got.kernels_by_shape == {"1x3": 64, "3x3": 36, "5x5": 16}
    assert got.sha256 == sha256_bytes(path.read_bytes())
    assert read_onnx_kernels(path, 5).kernels == 16


def test_onnx_subgraphs_are_noted_and_a_broken_file_refused(tmp_path):
    branch = helper.make_graph([helper.make_node("Identity", ["x"], ["b"])], "branch", [],
                               [helper.make_tensor_value_info("b", TensorProto.FLOAT, None)])
    w = numpy_helper.from_array(np.ones((1, 1, 3, 3), np.float32), "w")
    path = tmp_path / "if.onnx"
    _model([helper.make_node("If", ["cond"], ["y0"], then_branch=branch, else_branch=branch),
            _conv("c", "y0", "w", "y")], [w], path)
    got = read_onnx_kernels(path, 3)
    assert got.kernels == 1 and got.notes == ("1 If node(s) hold subgraphs whose convolutions are not read",)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\xff" * 64)
    assert "not an ONNX model" in refused(read_onnx_kernels, junk, 3)


def _external_model(folder: Path, location: str, weight: np.ndarray) -> Path:
    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=weight.shape)
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in {"location": location, "offset": "0", "length": str(weight.nbytes)}.items():
        tensor.external_data.add(key=key, value=value)
    path = folder / "model.onnx"
    _model([_conv("c", "x", "w", "y", (3, 3))], [tensor], path)
    return path


def test_onnx_external_data_inside_the_folder_is_read(tmp_path):
    weight = np.arange(18, dtype=np.float32).reshape(2, 1, 3, 3)
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "w.bin").write_bytes(weight.tobytes())
    got = read_onnx_kernels(_external_model(tmp_path, "weights/w.bin", weight), 3)
    assert torch.equal(got.layers["w"], torch.from_numpy(weight).reshape(-1, 3, 3))
    assert got.notes == (f"1 tensor(s) stored as external data inside {tmp_path.name}/",)


@pytest.mark.parametrize("where", ["parent", "absolute", "symlink"])
def test_onnx_external_data_outside_the_folder_is_refused(tmp_path, where):
    weight = np.ones((2, 1, 3, 3), np.float32)
    outside = tmp_path / "secret.bin"
    outside.write_bytes(weight.tobytes())
    folder = tmp_path / "model"
    folder.mkdir()
    location = {"parent": "../secret.bin", "absolute": str(outside), "symlink": "link.bin"}[where]
    if where == "symlink":
        (folder / "link.bin").symlink_to(outside)
    path = _external_model(folder, location, weight)
    before = tree(tmp_path)
    message = refused(read_source_kernels, path, 3)
    assert "refusing the model" in message and repr(location) in message
    assert tree(tmp_path) == before


# --- kernel arrays --------------------------------------------------------------------------------------------------
def test_kernel_arrays_in_each_accepted_shape(tmp_path):
    rng = np.random.default_rng(1)
    flat, single, conv = (rng.normal(size=s).astype(np.float32) for s in ((5, 3, 3), (4, 1, 3, 3), (3, 2, 3, 3)))
    np.savez(tmp_path / "k.npz", flat=flat, single=single, conv=conv, wide=np.ones((2, 5, 5), np.float32),
             table=np.ones((3, 9), np.float32))
    got = read_array_kernels(tmp_path / "k.npz", 3)
    assert {n: len(v) for n, v in got.layers.items()} == {"flat": 5, "single": 4, "conv": 6}
    assert torch.equal(got.layers["flat"], torch.from_numpy(flat))
    assert got.taken[0] == {"name": "flat", "shape": [5, 3, 3], "groups": None, "kernels": 5}
    assert {s["name"] for s in got.skipped} == {"wide", "table"}
    np.save(tmp_path / "layer1.npy", single.astype(np.float64))
    got = read_source_kernels(tmp_path / "layer1.npy", 3)
    assert list(got.layers) == ["layer1"] and got.layers["layer1"].dtype == torch.float32


def test_object_and_non_finite_arrays_are_refused(tmp_path):
    objects = np.empty(2, dtype=object)
    objects[:] = [np.ones((3, 3)), "text"]
    np.save(tmp_path / "objects.npy", objects, allow_pickle=True)
    np.savez(tmp_path / "objects.npz", ok=np.ones((2, 3, 3)), bad=objects)
    bad = np.ones((2, 3, 3), np.float32)
    bad[1, 1, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    before = tree(tmp_path)
    for name in ("objects.npy", "objects.npz"):
        assert "object-dtype" in refused(read_array_kernels, tmp_path / name, 3)
    assert "1 NaN or infinite values" in refused(read_array_kernels, tmp_path / "nan.npy", 3)
    assert "not a source file" in refused(read_source_kernels, tmp_path / "weights.bin", 3)
    assert tree(tmp_path) == before
