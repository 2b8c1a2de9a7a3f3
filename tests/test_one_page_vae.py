"""The one-page script (notebooks/one_page_vae.py) as a user runs it: its command line,
its outputs and its errors. Chapter 09 checks that it trains what the package trains."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "notebooks" / "one_page_vae.py"


def run(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(SCRIPT), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def test_trains_saves_weights_and_samples(mnist_root, tmp_path):
    out = tmp_path / "runs" / "vae.pt"  # a folder that does not exist yet
    short = ["--epochs", "2", "--train-size", "256", "--batch-size", "64"]
    result = run(*short, "--device", "cpu", "--data", str(mnist_root), "--out", str(out))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:2]] == ["epoch 1", "epoch 2"]
    assert "test" in lines[0] and str(out) in lines[-1]
    weights = torch.load(out)
    assert weights["encoder.fc_mu.weight"].shape == (20, 256)
    png = out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "0"], "must be > 0"),
        (["--lr=-1e-3"], "must be > 0"),
        (["--batch-size", "0"], "must be > 0"),
        (["--lr", "fast"], "invalid float value: 'fast'"),
        (["--lr", "nan"], "must be > 0"),
        (["--out", "runs/vae.png"], "--out names the weights' file"),
    ],
)
def test_bad_settings_fail_before_any_work(args, message, tmp_path):
    out = tmp_path / "vae.pt"
    result = run("--data", str(tmp_path / "no-data"), "--out", str(out), *args)
    assert result.returncode == 2  # argparse's usage error
    assert message in result.stderr
    assert not out.exists() and not (tmp_path / "no-data").exists()


def test_a_diverging_run_stops_with_what_to_change(mnist_root, tmp_path):
    out = tmp_path / "vae.pt"
    short = ["--epochs", "3", "--train-size", "256", "--device", "cpu"]
    result = run(*short, "--lr", "1e9", "--data", str(mnist_root), "--out", str(out))
    assert result.returncode == 1
    assert result.stdout.count("epoch") == 1  # stopped after the first epoch
    assert "the loss is nan: lower --lr" in result.stderr
    assert not out.exists()  # no weights of nan saved


def test_missing_data_offline_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import one_page_vae

    def offline(root, train, download):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(one_page_vae.datasets, "MNIST", offline)
    data = tmp_path / "nowhere"
    with pytest.raises(SystemExit, match=f"no MNIST in {data} .*; pass --data"):
        one_page_vae.main(["--data", str(data), "--out", str(tmp_path / "v.pt")])
