"""etf-train: schedule, data stream, losses, exact resume after a real kill, warm start, bad input, and the
torchrun/gloo two-process path with synchronised elastic BN."""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from supernet.training.checkpoint import load_supernet, read_checkpoint, warm_start
from etf.common import EtfError
from supernet.training.losses import distillation_loss, segmentation_loss
from supernet.model import TopFormerSupernet
from supernet.cli.train import main
from supernet.training.train import LOG_COLUMNS, StreamSampler, TrainConfig, lr_factor, read_log
from tests.train_helpers import ROOT, SIZE


# ---------------------------------------------------------------------------------------------- pure parts
def test_lr_factor_warms_up_linearly_then_decays_poly() -> None:
    assert lr_factor(0, 100, 10, 1e-6, 1.0) == pytest.approx(1e-6 * 1.0)
    assert lr_factor(5, 100, 10, 0.0, 1.0) == pytest.approx(0.5 * 0.95)
    assert lr_factor(10, 100, 10, 1e-6, 1.0) == pytest.approx(0.9)
    assert lr_factor(50, 100, 0, 1e-6, 1.0) == pytest.approx(0.5)
    assert lr_factor(50, 100, 0, 1e-6, 0.9) == pytest.approx(0.5 ** 0.9)
    assert lr_factor(100, 100, 10, 1e-6, 1.0) == 0.0


def test_stream_sampler_resumes_mid_epoch_and_splits_ranks() -> None:
    def take(sampler: StreamSampler, n: int) -> list[tuple[int, int]]:
        it = iter(sampler)
        return [next(it) for _ in range(n)]

    full = take(StreamSampler(10, seed=3), 25)
    assert sorted(i for e, i in full[:10]) == list(range(10))  # an epoch is a permutation
    assert [e for e, _ in full] == [0] * 10 + [1] * 10 + [2] * 5
    assert full[:10] != full[10:20]  # a new order each epoch
    assert take(StreamSampler(10, seed=3, start=13), 12) == full[13:25]
    r0 = take(StreamSampler(10, seed=3, rank=0, world_size=2), 5)
    r1 = take(StreamSampler(10, seed=3, rank=1, world_size=2), 5)
    assert sorted(i for _, i in r0 + r1) == list(range(10))
    assert StreamSampler(10, seed=3).position(23) == {"epoch": 2, "offset": 3}
    with pytest.raises(EtfError):
        StreamSampler(1, seed=0, world_size=2)


def test_losses_at_label_size_skip_ignored_pixels() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 4, 4)
    label = torch.randint(0, 4, (2, 32, 32))
    label[:, :, 16:] = 255
    up = F.interpolate(logits, size=(32, 32), mode="bilinear", align_corners=False)
    expected = F.cross_entropy(up[:, :, :, :16].permute(0, 2, 3, 1).reshape(-1, 4), label[:, :, :16].reshape(-1))
    assert segmentation_loss(logits, label).item() == pytest.approx(expected.item(), rel=1e-5)
    assert distillation_loss(logits, logits, label).item() == pytest.approx(0.0, abs=1e-6)
    other = torch.randn(2, 4, 4, 4)
    kd = distillation_loss(other, logits, label)
    p_t = F.softmax(up, 1)
    log_s = F.log_softmax(F.interpolate(other, size=(32, 32), mode="bilinear", align_corners=False), 1)
    kl = (p_t * (p_t.log() - log_s)).sum(1)[:, :, :16].mean()
    assert kd.item() == pytest.approx(kl.item(), rel=1e-5)
    assert kd.item() > 0
    # nothing labelled: nothing to distil
    all_ignored = torch.full_like(label, 255)
    assert distillation_loss(other, logits, all_ignored).item() == 0.0


# ---------------------------------------------------------------------------------------------- the tiny run
def test_tiny_run_writes_checkpoint_format_and_log(tiny_ckpt: Path) -> None:
    state = read_checkpoint(tiny_ckpt)
    assert {"model", "num_classes", "iteration", "optimizer", "scheduler", "rng", "args"} <= set(state)
    assert state["iteration"] == 6 and state["num_classes"] == 5
    assert state["args"]["dataset"] == "synthetic" and state["args"]["size"] == SIZE
    assert len(state["rng"]["ranks"]) == 1 and {"python", "numpy", "torch", "arch"} <= set(state["rng"]["ranks"][0])
    rows = read_log(tiny_ckpt.parent / "log.csv")
    assert [r["iter"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert list(rows[0]) == list(LOG_COLUMNS)
    assert all(r["loss_max"] > 0 and r["loss_min"] >= 0 and r["loss_rand"] >= 0 for r in rows)
    assert rows[-1]["lr"] < rows[1]["lr"]  # poly decay
    net = load_supernet(tiny_ckpt)
    assert isinstance(net, TopFormerSupernet) and net.num_classes == 5 and not net.training
    fresh = TopFormerSupernet(num_classes=5)
    assert not torch.equal(net.classifier.weight, fresh.classifier.weight)


def test_warm_start_loads_matching_tensors_and_reports_the_rest(tiny_ckpt: Path, tmp_path: Path) -> None:
    target = TopFormerSupernet(num_classes=7)  # different class count: the classifier cannot load
    loaded, skipped = warm_start(target, tiny_ckpt)
    trained = load_supernet(tiny_ckpt)
    assert set(skipped) == {"classifier.weight", "classifier.bias"}
    assert len(loaded) == len(target.state_dict()) - 2
    assert torch.equal(target.stem.weight, trained.stem.weight)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"backbone.conv.weight": torch.zeros(3)}}, foreign)
    with pytest.raises(EtfError, match="no tensor matches"):
        warm_start(target, foreign)


def test_load_supernet_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(EtfError, match="does not exist"):
        load_supernet(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file at all")
    with pytest.raises(EtfError, match="cannot read checkpoint") as info:
        load_supernet(bad)
    assert "\n" not in str(info.value)
    other = tmp_path / "other.pt"
    torch.save({"weights": 1}, other)
    with pytest.raises(EtfError, match="not an etf-train supernet checkpoint"):
        load_supernet(other)


# ---------------------------------------------------------------------------------------------- CLI bad input
def _one_line_error(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("etf-train: error: "), err
    return err


def test_cli_bad_input_gives_one_line_and_exit_2(tmp_path: Path, tiny_data: Path, tiny_ckpt: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    base = ["--dataset", "synthetic", "--size", str(SIZE), "--iters", "1", "--workers", "0", "--no-progress"]
    assert "does not exist" in _one_line_error(capsys, ["--data", str(tmp_path / "missing"), "-o",
                                                        str(tmp_path / "r"), *base])
    no_split = tmp_path / "no_split"
    shutil.copytree(tiny_data, no_split)
    shutil.rmtree(no_split / "images" / "training")
    assert "lacks the split folder" in _one_line_error(capsys, ["--data", str(no_split), "-o", str(tmp_path / "r"), *base])
    assert "does not exist" in _one_line_error(capsys, ["--data", str(tiny_data), "-o", str(tmp_path / "r2"),
                                                        "--resume", *base])
    assert "already exists" in _one_line_error(capsys, ["--data", str(tiny_data), "-o", str(tiny_ckpt.parent), *base])
    assert "differs from the run's" in _one_line_error(
        capsys, ["--data", str(tiny_data), "-o", str(tiny_ckpt.parent), "--resume", *base, "--batch", "3"])
    bad = tmp_path / "bad.pt"
    bad.write_text("garbage")
    assert "cannot read checkpoint" in _one_line_error(capsys, ["--data", str(tiny_data), "-o", str(tmp_path / "r3"),
                                                                "--warm-start", str(bad), *base])
    assert not (tmp_path / "r3" / "last.pt").exists()


def test_resume_of_a_finished_run_does_nothing(tiny_data: Path, tiny_ckpt: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "copy"
    shutil.copytree(tiny_ckpt.parent, run)
    before = (run / "last.pt").read_bytes()
    assert main(["--data", str(tiny_data), "--dataset", "synthetic", "-o", str(run), "--resume", "--no-progress"]) == 0
    assert (run / "last.pt").read_bytes() == before
    assert "nothing to do" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- exact resume
def _train_args(data: Path, out: Path, iters: int) -> list[str]:
    return ["--data", str(data), "--dataset", "synthetic", "--size", str(SIZE), "--batch", "2", "--iters", str(iters),
            "--lr", "2e-3", "--warmup-iters", "2", "--num-random", "1", "--workers", "1", "--ckpt-every", "1",
            "--seed", "5", "--no-progress", "-o", str(out)]


def _popen_train(args: list[str]) -> subprocess.Popen:
    # one thread each: two runs side by side on a 2-core machine otherwise thrash (88 s instead of ~30 in the suite)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "supernet.cli.train", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _log_rows(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [r for r in csv.reader(f)][1:]


@pytest.mark.slow
def test_killed_and_resumed_run_matches_the_uninterrupted_run(tiny_data: Path, tmp_path: Path) -> None:
    iters = 4
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    proc = _popen_train(_train_args(tiny_data, straight, iters))
    victim = _popen_train(_train_args(tiny_data, killed, iters))
    # SIGKILL the second run once it has logged 2 steps (no chance to clean up; the next step may be half done)
    deadline = time.time() + 900
    while len(_log_rows(killed / "log.csv")) < 2 and victim.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert victim.poll() is None, victim.communicate()[1][-2000:]
    victim.kill()  # SIGKILL
    victim.wait()
    assert read_checkpoint(killed / "last.pt")["iteration"] < iters
    resumed = _popen_train(_train_args(tiny_data, killed, iters)[:-2] + ["-o", str(killed), "--resume"])
    out, err = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, err[-2000:]
    assert "resumed" in err
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-2000:]

    a, b = read_log(straight / "log.csv"), read_log(killed / "log.csv")
    assert [r["iter"] for r in a] == [r["iter"] for r in b] == list(range(1, iters + 1))
    for ra, rb in zip(a, b):
        for key in ("loss_max", "loss_min", "loss_rand", "lr"):
            assert rb[key] == pytest.approx(ra[key], rel=1e-5, abs=1e-7), (ra, rb)
    sa, sb = read_checkpoint(straight / "last.pt"), read_checkpoint(killed / "last.pt")
    for name, tensor in sa["model"].items():
        assert torch.allclose(tensor.double(), sb["model"][name].double(), rtol=1e-4, atol=1e-6), name


# ---------------------------------------------------------------------------------------------- distributed
def _sync_bn_worker(rank: int, world: int, port: int, result_dir: str) -> None:
    import torch.distributed as dist

    from supernet.training.distributed import convert_sync_elastic_bn
    from supernet.elastic import ElasticConvBN

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.manual_seed(0)
    layer = ElasticConvBN(3, 8)
    x = torch.randn(4, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    convert_sync_elastic_bn(layer)
    layer.train()
    part = x[rank * 2:(rank + 1) * 2].clone().requires_grad_(True)
    y = layer(part, 5)
    y.pow(2).sum().backward()
    torch.save({"y": y.detach(), "grad_x": part.grad, "grad_w": layer.bn_weight.grad, "mean": layer.running_mean,
                "var": layer.running_var}, os.path.join(result_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_synced_elastic_bn_over_two_gloo_processes_equals_one_big_batch(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    from supernet.elastic import ElasticConvBN

    mp.spawn(_sync_bn_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    torch.manual_seed(0)
    layer = ElasticConvBN(3, 8).train()
    x = torch.randn(4, 3, 6, 6, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    y = layer(x, 5)
    y.pow(2).sum().backward()
    grad_w = torch.zeros_like(layer.bn_weight.grad)
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert torch.allclose(got["y"], y[rank * 2:(rank + 1) * 2].detach(), atol=1e-5)
        assert torch.allclose(got["grad_x"], x.grad[rank * 2:(rank + 1) * 2], atol=1e-4)
        assert torch.allclose(got["mean"], layer.running_mean, atol=1e-6)
        assert torch.allclose(got["var"], layer.running_var, atol=1e-5)
        grad_w += got["grad_w"]
    assert torch.allclose(grad_w, layer.bn_weight.grad, atol=1e-3)  # the sum of local gradients = global


def _ddp_batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(4, 3, 64, 64, generator=gen, dtype=torch.float64), torch.randint(0, 4, (4, 64, 64),
                                                                                      generator=gen)


def _ddp_model() -> torch.nn.Module:
    from supernet.model import TopFormerSupernet

    torch.manual_seed(0)
    # float64: in float32 the untrained net's near-degenerate BN channels amplify summation-order noise to
    # ~0.5% of the gradient, on one process as on two; in float64 the two paths agree to ~1e-11
    model = TopFormerSupernet(num_classes=4).double().train()
    model.dropout.p = 0.0  # dropout streams differ per rank by design; switch it off to compare gradients
    return model


def _ddp_sandwich_worker(rank: int, world: int, port: int, result_dir: str) -> None:
    import random

    import torch.distributed as dist

    from supernet.training.distributed import convert_sync_elastic_bn, wrap_ddp
    from supernet.training.train import sandwich_step

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    model = _ddp_model()
    if rank == 1:  # DDP must broadcast rank 0's weights at construction
        with torch.no_grad():
            next(model.parameters()).add_(1.0)
    convert_sync_elastic_bn(model)
    ddp = wrap_ddp(model, torch.device("cpu"))
    images, labels = _ddp_batch()
    part = slice(rank * 2, rank * 2 + 2)
    losses = sandwich_step(model, images[part], labels[part], 1, random.Random(0), ddp)
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    torch.save({"grads": grads, "losses": losses}, os.path.join(result_dir, f"ddp{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_sandwich_step_over_two_gloo_processes_equals_one_big_batch(tmp_path: Path) -> None:
    """Four passes through different subnets, three under no_sync: the averaged gradients equal one process's."""
    import random

    import torch.multiprocessing as mp

    from supernet.training.train import sandwich_step

    mp.spawn(_ddp_sandwich_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    model = _ddp_model()
    images, labels = _ddp_batch()
    sandwich_step(model, images, labels, 1, random.Random(0))
    want = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    got = [torch.load(tmp_path / f"ddp{r}.pt")["grads"] for r in range(2)]
    assert set(got[0]) == set(got[1]) == set(want)
    scale = max(g.abs().max().item() for g in want.values())
    for name, g in want.items():
        for r in range(2):
            assert torch.allclose(got[r][name], g, rtol=1e-7, atol=1e-9 * scale), name


@pytest.mark.slow
def test_torchrun_two_gloo_processes_train_and_resume(tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}

    def torchrun(*extra: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(_free_port()), "-m", "supernet.cli.train", "--data", str(tiny_data), "--dataset", "synthetic",
               "--size", str(SIZE), "--batch", "2", "--lr", "2e-3", "--warmup-iters", "1", "--num-random", "1",
               "--workers", "0", "--device", "cpu", "--ckpt-every", "1", "--no-progress", "-o", str(out), *extra]
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)

    first = torchrun("--iters", "2")
    assert first.returncode == 0, first.stderr[-3000:]
    state = read_checkpoint(out / "last.pt")
    assert state["iteration"] == 2 and state["rng"]["world_size"] == 2 and len(state["rng"]["ranks"]) == 2
    # different dropout streams per rank, one shared subnet sampler
    r0, r1 = state["rng"]["ranks"]
    assert not torch.equal(r0["torch"], r1["torch"]) and r0["arch"] == r1["arch"]
    second = torchrun("--iters", "3", "--resume")
    assert second.returncode == 0, second.stderr[-3000:]
    assert read_checkpoint(out / "last.pt")["iteration"] == 3
    rows = read_log(out / "log.csv")
    assert [r["iter"] for r in rows] == [1, 2, 3]
    assert all(r["loss_max"] > 0 for r in rows)
    # the resumed step follows the new 3-step schedule, not the finished 2-step one (whose lr had reached 0)
    assert rows[2]["lr"] == pytest.approx(2e-3 * lr_factor(2, 3, 1, TrainConfig.warmup_ratio, TrainConfig.poly_power))
    assert rows[2]["lr"] > 0
