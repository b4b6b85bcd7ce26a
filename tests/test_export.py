"""Export: deployed-model building, checkpoints, fidelity, op list, ``export_subnet`` and ``etf-export``.

Conversion-heavy tests are marked slow (each litert-torch conversion takes ~20-90 s on this shared machine).
Presets are exported at 128x128, the smallest size whose token map has more than one token (at 64x64 the
attention runs on a single token and its head transposes degenerate into reshapes), random configs at 64x64.
"""
import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from android_bench.export.deploy import build_deployed_model, randomize_batchnorm_, read_checkpoint
from android_bench.export.fold import fold_batchnorms_
from etf.common import EtfError
from android_bench.export.convert import export_subnet
from android_bench.cli.export import main as export_main
from android_bench.export.fidelity import DEFAULT_REL_TOL, check_fidelity, compare, fixed_input
from android_bench.export.layout import ChannelLastAttention, NHWCBoundary, channel_last_attention_
from supernet.model import TopFormerSupernet
from android_bench.export.oplist import ROLE_BOUNDARY, ROLE_HEADS, ROLE_LAYOUT, TfliteOp, tflite_ops, transpose_role
from supernet.presets import PRESETS
from supernet.space import TABLE1, save_config
from supernet.topformer import Attention, TopFormer
from supernet.heads import HEADS, output_spec
from latency.operators import decompose
from android_bench.export.fidelity import LabelFidelity, compare_labels
from collections import Counter

CLASSES = 4


def _randomized_supernet(num_classes: int) -> TopFormerSupernet:
    torch.manual_seed(1)
    net = TopFormerSupernet(num_classes=num_classes)
    with torch.no_grad():
        for m in net.modules():
            if hasattr(m, "running_mean"):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.bn_weight.uniform_(0.5, 1.5)
                m.bn_bias.uniform_(-0.2, 0.2)
    return net.eval()


@pytest.fixture(scope="module")
def supernet_ckpt(tmp_path_factory):
    net = _randomized_supernet(3)
    path = tmp_path_factory.mktemp("ckpt") / "supernet.pt"
    torch.save({"model": net.state_dict(), "num_classes": 3, "iteration": 10}, path)
    return net, path


# -- layout: channel-last attention and the NHWC wrapper (pure PyTorch, fast) -------------------------------

@pytest.mark.parametrize("heads, key_dim, value_dim, hw", [(2, 12, 19, (4, 4)), (8, 16, 32, (2, 3)), (4, 20, 48, (1, 1))])
def test_channel_last_attention_computes_the_same_function(heads, key_dim, value_dim, hw):
    torch.manual_seed(0)
    attn = randomize_batchnorm_(Attention(40, key_dim, heads, value_dim)).eval()
    x = torch.randn(1, 40, *hw)
    twin = ChannelLastAttention(attn)
    with torch.no_grad():
        torch.testing.assert_close(twin(x), attn(x), rtol=1e-5, atol=1e-6)
    assert twin.to_q is attn.to_q  # weights shared, not copied


def test_channel_last_rewrite_replaces_every_attention_and_keeps_outputs():
    model, _, _ = build_deployed_model(PRESETS["topformer-tiny"], num_classes=CLASSES)
    x = fixed_input((1, 3, 128, 128))
    with torch.no_grad():
        ref = model(x)
        import copy
        twin = channel_last_attention_(copy.deepcopy(model))
        out = twin(x)
    assert not any(isinstance(m, Attention) for m in twin.modules())
    assert sum(isinstance(m, ChannelLastAttention) for m in twin.modules()) == 4
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_nhwc_boundary_takes_and_returns_channel_last():
    model, _, _ = build_deployed_model(TABLE1.min_config(), num_classes=CLASSES, head="logits")
    x = fixed_input((1, 3, 64, 64))
    with torch.no_grad():
        y = NHWCBoundary(model)(x.permute(0, 2, 3, 1))
        assert y.shape == (1, 64, 64, CLASSES)
        torch.testing.assert_close(y.permute(0, 3, 1, 2), model(x))


def test_random_weights_are_not_degenerate():
    """TopFormer zero-inits the attention projection BN; export would fold the attention away."""
    model, classes, kind = build_deployed_model(PRESETS["topformer-tiny"])
    assert (classes, kind) == (150, "random")
    proj_bn = model.net.transformer[0].attn.proj[1].bn
    assert proj_bn.weight.abs().min() > 0.5 and not model.training


# -- checkpoints (fast) -----------------------------------------------------------------------------------

def test_supernet_checkpoint_gives_the_extracted_subnet(supernet_ckpt):
    net, path = supernet_ckpt
    cfg = TABLE1.sample(4)
    model, classes, kind = build_deployed_model(cfg, path, head="logits")
    assert (classes, kind) == (3, "supernet")
    x = fixed_input((1, 3, 64, 64))
    with torch.no_grad():
        net.set_active_subnet(cfg)
        expected = torch.nn.functional.interpolate(net(x), size=(64, 64), mode="bilinear", align_corners=False)
        torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(build_deployed_model(cfg, path)[0](x), net(x), rtol=1e-4, atol=1e-5)  # logits8


def test_static_state_dict_loads_with_or_without_resize_prefix(tmp_path):
    cfg = PRESETS["topformer-tiny"]
    model, _, _ = build_deployed_model(cfg, num_classes=5, seed=3)
    torch.save(model.net.state_dict(), tmp_path / "static.pt")
    torch.save(model.state_dict(), tmp_path / "wrapped.pt")  # keys start with "net."
    x = fixed_input((1, 3, 64, 64))
    for name in ("static.pt", "wrapped.pt"):
        loaded, classes, kind = build_deployed_model(cfg, tmp_path / name)
        assert (classes, kind) == (5, "static")
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), model(x))


def _one_line(exc: EtfError) -> str:
    msg = str(exc)
    assert "\n" not in msg and msg
    return msg


def test_bad_checkpoints_are_one_line_errors(tmp_path, supernet_ckpt):
    _, ckpt = supernet_ckpt
    cfg = PRESETS["topformer-tiny"]
    (tmp_path / "garbage.pt").write_bytes(b"\x00not a checkpoint" * 50)
    torch.save({"model": {"a": torch.zeros(2)}}, tmp_path / "alien.pt")
    torch.save({"epoch": 3}, tmp_path / "nostate.pt")
    static = TopFormer(TABLE1.min_config(), 3).state_dict()
    torch.save(static, tmp_path / "other_arch.pt")
    cases = {
        tmp_path / "missing.pt": "weights file not found",
        tmp_path / "garbage.pt": "cannot read checkpoint",
        tmp_path / "alien.pt": "neither a TopFormerSupernet nor a TopFormer",
        tmp_path / "nostate.pt": "holds no state_dict",
        tmp_path / "other_arch.pt": "does not fit the TopFormer of arch",
    }
    for path, needle in cases.items():
        with pytest.raises(EtfError) as err:
            build_deployed_model(cfg, path)
        assert needle in _one_line(err.value), (path, str(err.value))
    with pytest.raises(EtfError, match="has 3 classes, not the 150 asked for"):
        build_deployed_model(cfg, ckpt, num_classes=150)
    state, classes = read_checkpoint(ckpt)
    assert classes == 3 and "classifier.weight" in state


def test_training_checkpoint_with_optimiser_and_rng_state_exports(tmp_path, supernet_ckpt):
    """An etf-train checkpoint (optimiser, numpy/python RNG states beside the weights) feeds etf-export as is."""
    import random

    import numpy as np

    net, path = supernet_ckpt
    plain = torch.load(path, map_location="cpu", weights_only=True)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    full = {**plain, "iteration": 7, "optimizer": opt.state_dict(),
            "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}}
    torch.save(full, tmp_path / "last.pt")
    state, classes = read_checkpoint(tmp_path / "last.pt")
    assert classes == plain["num_classes"] and set(state) == set(plain["model"])
    model, _, kind = build_deployed_model(TABLE1.sample(2), tmp_path / "last.pt")
    assert kind == "supernet"


# -- pure parts of the fidelity check and the op classification -------------------------------------------

def test_compare_uses_a_tolerance_relative_to_the_largest_logit():
    ref = np.array([[10.0, -20.0]], dtype=np.float32)
    ok = compare("tflite", ref + 1e-3, ref)
    assert ok.ok and ok.tolerance == pytest.approx(20.0 * DEFAULT_REL_TOL)
    assert ok.max_abs_error == pytest.approx(1e-3, rel=1e-3) and ok.relative_error == pytest.approx(5e-5, rel=1e-3)
    bad = compare("onnx", ref + np.array([[0.0, 3e-3]], dtype=np.float32), ref)
    assert not bad.ok
    with pytest.raises(EtfError, match="output shape"):
        compare("onnx", ref[:, :1], ref)


def _op(perm, shape, reads_input=False, writes_output=False):
    return TfliteOp(0, "TRANSPOSE", (shape, (4,)), (), reads_input, writes_output, perm)


def test_transpose_roles():
    assert transpose_role(_op((0, 2, 1, 3), (1, 64, 4, 16)), {4}) == ROLE_HEADS  # q/v head split
    assert transpose_role(_op((0, 2, 3, 1), (1, 64, 4, 16)), {4}) == ROLE_HEADS  # k head split
    assert transpose_role(_op((0, 2, 1, 3), (1, 4, 64, 32)), {4}) == ROLE_HEADS  # head merge
    assert transpose_role(_op((0, 3, 1, 2), (1, 8, 8, 64)), {4}) == ROLE_LAYOUT  # NHWC -> NCHW
    assert transpose_role(_op((0, 2, 3, 1), (1, 8, 8, 64)), {4}) == ROLE_LAYOUT  # not a heads axis
    assert transpose_role(_op((0, 3, 1, 2), (1, 64, 64, 3), reads_input=True), {4}) == ROLE_BOUNDARY


# -- bad input to etf-export: one line, exit 2, nothing left behind (fast: fails before converting) --------

def _bad_arch_file(tmp_path):
    data = json.loads(PRESETS["topformer-tiny"].to_json())
    data["stages"][3]["width"] = 999
    path = tmp_path / "huge.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("case", ["missing_weights", "corrupt_ckpt", "out_of_space", "bad_size", "unknown_preset"])
def test_cli_bad_input_one_line_exit_2_no_files(tmp_path, capsys, case):
    (tmp_path / "corrupt.pt").write_bytes(b"PK\x03\x04 truncated zip")
    args = {
        "missing_weights": ["--arch", "topformer-tiny", "--weights", str(tmp_path / "nope.pt")],
        "corrupt_ckpt": ["--arch", "topformer-tiny", "--weights", str(tmp_path / "corrupt.pt")],
        "out_of_space": ["--arch", str(_bad_arch_file(tmp_path))],
        "bad_size": ["--arch", "topformer-tiny", "--size", "100"],
        "unknown_preset": ["--arch", "topformer-huge"],
    }[case]
    if "--size" not in args:
        args += ["--size", "64"]
    out = tmp_path / "out"
    code = export_main([*args, "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("etf-export: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_an_uncalibrated_supernet_subnet_is_refused_unless_asked_for(tmp_path, capsys, supernet_ckpt):
    """One artefact: the file shipped must be the model the search scored (BN recalibrated for the subnet)."""
    _, ckpt = supernet_ckpt
    out = tmp_path / "out"
    with pytest.raises(EtfError, match="supernet checkpoint: its shared BN statistics are not this subnet's"):
        export_subnet(PRESETS["topformer-tiny"], out, size=64, weights=ckpt)
    assert not out.exists()
    base = ["--arch", "topformer-tiny", "--weights", str(ckpt), "--size", "64", "-o", str(out)]
    for extra, needle in [([], "--data DIR --dataset NAME"), (["--dataset", "synthetic"], "--dataset without --data"),
                          (["--data", str(tmp_path)], "--data needs --dataset"),
                          (["--data", str(tmp_path), "--dataset", "synthetic", "--no-recalibrate"], "give one of them"),
                          (["--data", str(tmp_path / "none"), "--dataset", "synthetic"], "does not exist")]:
        assert export_main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("etf-export: error: ") and err.count("\n") == 1 and needle in err, (extra, err)
        assert not out.exists()
    # a static checkpoint cannot be recalibrated (its statistics ship as stored) and random weights have none
    static = tmp_path / "static.pt"
    torch.save(TopFormer(PRESETS["topformer-tiny"], 3).state_dict(), static)
    with pytest.raises(EtfError, match="static TopFormer checkpoint"):
        build_deployed_model(PRESETS["topformer-tiny"], static, calib_batches=[torch.zeros(1, 3, 32, 32)])
    with pytest.raises(EtfError, match="needs --weights"):
        build_deployed_model(PRESETS["topformer-tiny"], calib_batches=[torch.zeros(1, 3, 32, 32)])


def test_recalibrated_export_ships_the_evaluators_bn_statistics(tiny_ckpt, tiny_data):
    """--data gives the subnet exactly the BN statistics SubnetEvaluator scores it with (same crops, seed, count)."""
    from supernet.recalibration import recalibrate_bn
    from supernet.evaluation.evaluator import CalibrationSpec, SubnetEvaluator
    from tests.train_helpers import SIZE

    cfg = TABLE1.sample(5)
    evaluator = SubnetEvaluator.from_checkpoint(tiny_ckpt, tiny_data, "synthetic", SIZE, n_calib=2, n_val=2, batch=4)
    net = evaluator.supernet
    net.set_active_subnet(cfg)
    recalibrate_bn(net, evaluator.calib_batches)
    scored = net.get_active_subnet(cfg).state_dict()
    evaluator.restore_bn()
    stale = net.get_active_subnet(cfg).state_dict()

    batches, classes = CalibrationSpec(tiny_data, "synthetic", SIZE, n_batches=2, batch=4, seed=0).batches()
    assert classes == 5
    shipped = build_deployed_model(cfg, tiny_ckpt, calib_batches=batches)[0].net.state_dict()
    uncalibrated = build_deployed_model(cfg, tiny_ckpt)[0].net.state_dict()
    assert set(shipped) == set(scored)
    for key in scored:
        assert torch.equal(shipped[key], scored[key]), key
        assert torch.equal(uncalibrated[key], stale[key]), key
    bn_keys = [k for k in scored if k.endswith("running_mean")]
    assert bn_keys and any(not torch.equal(scored[k], stale[k]) for k in bn_keys)  # recalibration changed them


@pytest.mark.slow
def test_cli_export_with_data_ships_recalibrated_bn_and_checks_that_model(tmp_path, tiny_ckpt, tiny_data):
    """The CLI as a user runs it (subprocess, human output) on a subnet of a supernet checkpoint with --data: the
    file computes the recalibrated subnet, and the fidelity check catches the same subnet with other statistics."""
    from supernet.evaluation.evaluator import CalibrationSpec

    cfg = TABLE1.sample(5)
    save_config(cfg, tmp_path / "arch.json")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "android_bench.cli.export", "--arch", str(tmp_path / "arch.json"),
                        "--weights", str(tiny_ckpt), "--data", str(tiny_data), "--dataset", "synthetic",
                        "--calib-size", "32", "--n-calib", "2", "--calib-batch", "4", "--size", "64", "--no-onnx",
                        "-o", str(out)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "5 classes" in r.stdout and "(supernet, BN recalibrated)" in r.stdout
    assert f"{out / 'model.tflite'}" in r.stdout and "converted in" in r.stdout and " MB" in r.stdout
    assert "fidelity tflite max abs error" in r.stdout and "FAILED" not in r.stdout and "0 stray" in r.stdout
    assert sorted(p.name for p in out.iterdir()) == ["arch.json", "export.json", "model.tflite"]
    assert json.loads((out / "arch.json").read_text()) == json.loads(cfg.to_json())
    report = json.loads((out / "export.json").read_text())
    assert report["bn"] == "recalibrated" and report["calibration"]["n_batches"] == 2
    assert all(f["ok"] for f in report["fidelity"])
    # the file computes the recalibrated model, not the supernet's shared statistics
    batches, _ = CalibrationSpec(tiny_data, "synthetic", 32, 2, 4).batches()
    shipped, _, _ = build_deployed_model(cfg, tiny_ckpt, calib_batches=batches)
    stale, _, _ = build_deployed_model(cfg, tiny_ckpt)
    assert check_fidelity(shipped, {"tflite": out / "model.tflite"}, (1, 3, 64, 64))[0].ok
    with pytest.raises(EtfError, match="fidelity check failed: tflite max abs error"):
        check_fidelity(stale, {"tflite": out / "model.tflite"}, (1, 3, 64, 64))


def test_cli_bad_input_keeps_an_existing_folder_untouched(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    r = subprocess.run([sys.executable, "-m", "android_bench.cli.export", "--arch", "topformer-tiny", "--weights",
                        str(tmp_path / "missing.pt"), "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--weights: file" in r.stderr and "does not exist" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


# -- conversions (slow) -----------------------------------------------------------------------------------

def _io_shapes(tflite, onnx):
    """((input, output) shapes of the .tflite, the same of the .onnx)."""
    from ai_edge_litert.interpreter import Interpreter
    import onnxruntime as ort

    interp = Interpreter(model_path=str(tflite))
    sess = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    return ((tuple(interp.get_input_details()[0]["shape"]), tuple(interp.get_output_details()[0]["shape"])),
            (tuple(sess.get_inputs()[0].shape), tuple(sess.get_outputs()[0].shape)))


@pytest.mark.slow
def test_cli_json_on_a_random_config(tmp_path, capsys):
    """A random config through the CLI at 128 px (the smallest size whose token map has more than one token):
    both files pass the fidelity check, NHWC at the boundary, the only TRANSPOSEs are the attention's head split
    and merge (4 per transformer block), and the JSON report is export.json. (The presets are exported by the
    head tests and the demo here, and all three at 512 px by benchmarks/bench_export.py --sweep.)"""
    cfg = TABLE1.sample(2)
    save_config(cfg, tmp_path / "arch.json")
    out = tmp_path / "out"
    code = export_main(["--arch", str(tmp_path / "arch.json"), "--size", "128", "--classes", str(CLASSES),
                        "--seed", "2", "-o", str(out), "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads((out / "export.json").read_text())
    assert report["arch_key"] == cfg.key() and report["weights_kind"] == "random"
    assert report["input"]["shape"] == [1, 128, 128, 3] and report["output"]["shape"] == [1, 16, 16, CLASSES]
    assert report["head"] == "logits8" and report["output"]["dtype"] == "float32"
    assert {f["runtime"] for f in report["fidelity"]} == {"tflite", "onnx"}
    for f in report["fidelity"]:
        assert f["ok"] and f["max_abs_error"] <= DEFAULT_REL_TOL * f["max_abs_logit"]
    assert report["stray_transposes"] == 0 and report["op_counts"]["CONV_2D"] > 0
    assert sorted(p.name for p in out.iterdir()) == ["arch.json", "export.json", "model.onnx", "model.tflite"]
    assert report["file_bytes"]["onnx"] == (out / "model.onnx").stat().st_size
    # NHWC at the boundary, both files alike; the default head logits8 returns the logits at 1/8
    assert _io_shapes(out / "model.tflite", out / "model.onnx") == (((1, 128, 128, 3), (1, 16, 16, CLASSES)),) * 2
    ops = tflite_ops(out / "model.tflite")
    edge = [op for op in ops if op.reads_model_input or op.writes_model_output]
    assert edge and all(op.name != "TRANSPOSE" for op in edge)
    blocks = sum(v.depth for v in cfg.vits)
    assert sum(op.name == "TRANSPOSE" for op in ops) == 4 * blocks == len(report["transposes"])
    assert all(t["role"] == ROLE_HEADS for t in report["transposes"])
    assert sum(op.name == "BATCH_MATMUL" for op in ops) == 2 * blocks
    assert report["delegation"] == {"ops": len(ops), "parts": 1, "outside": {}}  # all in XNNPACK


# -- output heads (slow: one real conversion per head at 64 px) ------------------------------------------------

@pytest.fixture(scope="module")
def head_exports(tmp_path_factory):
    """TopFormer-Tiny exported at 64 px with each head (real litert-torch + torch.onnx, fidelity-checked)."""
    root = tmp_path_factory.mktemp("heads")
    return {head: export_subnet("topformer-tiny", root / head, size=64, num_classes=CLASSES, head=head)
            for head in HEADS}


@pytest.mark.slow
@pytest.mark.parametrize("head", HEADS)
def test_each_head_exports_with_the_recorded_output_and_passes_its_fidelity_check(head_exports, head):
    from ai_edge_litert.interpreter import Interpreter
    import onnxruntime as ort

    res = head_exports[head]
    report = json.loads((res.out_dir / "export.json").read_text())
    want = output_spec(head, 64, CLASSES)
    assert report["head"] == head and {k: report["output"].get(k) for k in want.to_dict()} == want.to_dict()
    assert want.shape == {"logits8": (1, 8, 8, CLASSES), "labels": (1, 64, 64, 1),
                          "logits": (1, 64, 64, CLASSES)}[head]
    out = Interpreter(model_path=str(res.files["tflite"])).get_output_details()[0]
    assert tuple(out["shape"]) == want.shape and out["dtype"].__name__ == want.dtype
    sess = ort.InferenceSession(str(res.files["onnx"]), providers=["CPUExecutionProvider"])
    onnx_out = sess.get_outputs()[0]
    assert onnx_out.name == want.name and tuple(onnx_out.shape) == want.shape
    assert onnx_out.type == {"float32": "tensor(float)", "int32": "tensor(int32)"}[want.dtype]
    assert {f.runtime for f in res.fidelity} == {"tflite", "onnx"} and all(f.ok for f in res.fidelity)
    if head == "labels":  # label maps compared pixel by pixel: equal everywhere on the check input
        assert all(isinstance(f, LabelFidelity) and f.equal_fraction == 1.0 and f.pixels == 64 * 64
                   for f in res.fidelity)
        assert report["fidelity"][0]["kind"] == "labels"
    assert res.stray_transposes == []


@pytest.mark.slow
def test_each_heads_graph_adds_exactly_what_decompose_adds(head_exports):
    """logits8 ends at the classifier; the labels graph adds the argmax and the label upsample (no float resize,
    whole-map copies and one placement transpose, no BROADCAST_TO); the logits graph adds one bilinear resize, as decompose/trace add one operator per head."""
    cfg = PRESETS["topformer-tiny"]
    base = decompose(cfg, 64, CLASSES)
    counts = {h: Counter(op.name for op in tflite_ops(r.files["tflite"])) for h, r in head_exports.items()}
    assert [op.kind for op in decompose(cfg, 64, CLASSES, head="labels")] == [op.kind for op in base] + ["labels"]
    assert [op.kind for op in decompose(cfg, 64, CLASSES, head="logits")] == [op.kind for op in base] + ["resize"]
    assert counts["logits"] - counts["logits8"] == Counter({"RESIZE_BILINEAR": 1})
    assert counts["logits8"] - counts["logits"] == Counter()
    added = counts["labels"] - counts["logits8"]
    assert added["ARG_MAX"] == 1 and added["CONCATENATION"] == 1 and added["TRANSPOSE"] == 1, added
    assert set(added) <= {"ARG_MAX", "CONCATENATION", "TRANSPOSE", "RESHAPE", "CAST"}, added  # no BROADCAST_TO
    roles = {t["role"] for t in head_exports["labels"].transposes} - {"attention-heads"}
    assert roles == {"label-upsample"}, roles
    assert counts["logits8"] - counts["labels"] == Counter()
    # XNNPACK takes the whole fp32 graph except the labels head's integer tail, which runs after it
    assert {h: r.delegation.parts for h, r in head_exports.items()} == {h: 1 for h in HEADS}
    assert head_exports["logits8"].delegation.outside == {} == head_exports["logits"].delegation.outside
    assert "ARG_MAX" in head_exports["labels"].delegation.outside
    last = [op for op in tflite_ops(head_exports["logits8"].files["tflite"]) if op.writes_model_output]
    assert [op.name for op in last] == ["CONV_2D"]  # the classifier's output is the model's output


def test_fidelity_for_labels_allows_only_near_ties():
    ref = np.array([[0, 1], [2, 3]])
    margin = np.array([[5.0, 1e-9], [5.0, 5.0]])
    assert compare_labels("x", ref.copy(), ref, margin, 1.0).ok
    flipped = np.array([[0, 2], [2, 3]])  # differs where the two best logits tie: float rounding may flip it
    res = compare_labels("x", flipped, ref, margin, 1.0)
    assert res.ok and res.near_ties == 1 and res.equal_fraction == 0.75
    wrong = np.array([[1, 1], [2, 3]])  # differs where the margin is clear: a real error
    assert not compare_labels("x", wrong, ref, margin, 1.0).ok


@pytest.mark.slow
def test_a_quantized_export_reuses_the_fp32_conversion_and_still_checks_it(head_exports, tmp_path):
    """``fp32_tflite`` (the export sweep's fp16/int8 exports): no second conversion, the same fidelity check."""
    fp32 = head_exports["logits8"].files["tflite"]
    res = export_subnet("topformer-tiny", tmp_path / "fp16", size=64, num_classes=CLASSES, precision="fp16",
                        onnx=False, fp32_tflite=fp32)
    assert "tflite" not in res.seconds and "quantize" in res.seconds and res.precision == "fp16"
    assert [f.runtime for f in res.fidelity] == ["tflite-fp32"] and res.fidelity[0].ok
    assert res.agreement is not None and res.agreement.label_agreement > 0.9
    assert sorted(p.name for p in (tmp_path / "fp16").iterdir()) == ["arch.json", "export.json", "model.tflite"]
    # the same architecture with other random weights (seed 1): the reused file is not its conversion
    with pytest.raises(EtfError, match="fidelity check failed"):
        export_subnet("topformer-tiny", tmp_path / "other", size=64, num_classes=CLASSES, precision="fp16",
                      onnx=False, seed=1, fp32_tflite=fp32)
    assert not (tmp_path / "other" / "model.tflite").exists()


def test_folding_batchnorms_keeps_the_function_and_leaves_no_batchnorm():
    net = randomize_batchnorm_(TopFormer(PRESETS["topformer-tiny"], num_classes=7)).eval()
    folded = copy.deepcopy(net)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert fold_batchnorms_(folded) == n_bn > 0
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref, out = net(x), folded(x)
    assert torch.allclose(out, ref, atol=1e-5 * float(ref.abs().max()))
    with pytest.raises(ValueError, match="eval-mode"):
        fold_batchnorms_(TopFormer(PRESETS["topformer-tiny"], num_classes=7).train())


def test_a_folded_conversion_has_the_unfolded_operators_and_outputs(tmp_path, monkeypatch):
    """Folding before the converter only saves conversion time: the converter folds BN itself, so the file has
    the same operators and computes the same values (the table times what the shipped file runs)."""
    import android_bench.export.convert as convert
    from android_bench.litert_runner import TfliteRunner

    op = decompose(PRESETS["topformer-tiny"], 64)[1]
    module = randomize_batchnorm_(op.build()).eval()
    shape = op.input_shapes()[0]
    folded = convert.export_tflite(module, shape, tmp_path / "folded.tflite")
    monkeypatch.setattr(convert, "fold_batchnorms_", lambda m: 0)
    plain = convert.export_tflite(module, shape, tmp_path / "plain.tflite")
    assert Counter(o.name for o in tflite_ops(folded)) == Counter(o.name for o in tflite_ops(plain))
    x = np.random.default_rng(0).standard_normal((1, shape[2], shape[3], shape[1])).astype(np.float32)
    a, b = TfliteRunner(folded)(x), TfliteRunner(plain)(x)
    assert np.allclose(a, b, atol=1e-5 * float(np.abs(b).max()))
