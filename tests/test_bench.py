"""The benchmark's choices, with fake timings: which run it reports as the fastest, which
recipe it calls the best on each device, and what its CUDA branch prints (no GPU needed)."""

import pytest
import torch

from vae_tutorial import bench
from vae_tutorial.bench import BLOG, Baseline, Run, Setup

CPU, CUDA = torch.device("cpu"), torch.device("cuda")  # a device object needs no GPU

# What `python -m vae_tutorial.bench --device cuda` measured on an NVIDIA H200 (issue #22)
H200_RATES = {Baseline.name: 12_223.0, "ours (package)": 39_420.0, "ours (CUDA graph)": 214_442.0}
H200_RUNS = {
    Baseline.name: Run(57.9, 8, 99.9, BLOG),
    "ours (blog recipe)": Run(2.0, 7, 99.8, Setup(128, 1e-3, graphed=True)),
    "ours (best recipe)": Run(4.5, 5, 99.7, Setup(32, 1e-3, 6, graphed=True)),
}


def test_the_fastest_path_is_the_package_path_with_the_most_images_per_second():
    assert bench.fastest_path(H200_RATES) == "ours (CUDA graph)"
    slow = {Baseline.name: 9.0, "ours (package)": 5.0, "ours + torch.compile": 7.0}
    assert bench.fastest_path(slow) == "ours + torch.compile"  # never the blog's own


def test_the_fastest_run_is_the_quickest_package_run_that_reached_the_target():
    assert bench.fastest_run(H200_RUNS, 100) == "ours (blog recipe)"  # not the last one listed
    missed = dict(H200_RUNS, **{"ours (blog recipe)": Run(1.0, 30, 100.5, BLOG)})
    assert bench.fastest_run(missed, 100) == "ours (best recipe)"  # quicker, but never got there
    assert bench.fastest_run(H200_RUNS, 90) is None


def test_the_headlines_give_the_fastest_runs_ratio_and_recipe(capsys):
    bench.print_throughput(H200_RATES)
    bench.print_time_to_target(H200_RUNS, 100)
    lines = capsys.readouterr().out.splitlines()
    path = next(line for line in lines if line.startswith("fastest package path"))
    assert "ours (CUDA graph) [batch 128, lr 0.001, constant lr, CUDA graph]: 17.54 x" in path
    run = next(line for line in lines if line.startswith("fastest package run"))
    assert "ours (blog recipe) [batch 128, lr 0.001, constant lr, CUDA graph]: 28.95 x" in run
    assert "(2.0 s against 57.9 s)" in run


def test_no_ratio_when_the_blog_or_every_package_run_misses_the_target(capsys):
    bench.print_time_to_target(dict(H200_RUNS, **{Baseline.name: Run(300, 30, 101, BLOG)}), 100)
    assert "the blog's did not reach the target in 30 epochs" in capsys.readouterr().out
    bench.print_time_to_target(H200_RUNS, 90)
    assert "none reached the target: ratio not defined" in capsys.readouterr().out


def test_each_device_has_its_measured_best_recipe():
    assert bench.best_setup(CPU) == Setup(batch_size=32, lr=1e-3, epochs=6, graphed=False)
    assert bench.best_setup(CUDA) == Setup(batch_size=128, lr=1e-3, epochs=None, graphed=True)
    assert bench.best_setup(torch.device("mps")) == bench.best_setup(CPU)
    given = bench.best_setup(CUDA, batch_size=256, lr=2e-3, epochs=0, graphed=False)
    assert given == Setup(batch_size=256, lr=2e-3, epochs=None, graphed=False)
    assert bench.best_setup(CPU, epochs=4) == Setup(32, 1e-3, 4)


def test_on_cuda_the_blogs_recipe_is_the_best_and_runs_once_on_cpu_both_run():
    cuda = bench.package_runs(CUDA, bench.best_setup(CUDA))
    assert cuda == {"ours (blog = best recipe)": Setup(128, 1e-3, graphed=True)}
    cpu = bench.package_runs(CPU, bench.best_setup(CPU))
    assert cpu == {"ours (blog recipe)": BLOG, "ours (best recipe)": Setup(32, 1e-3, 6)}


def fake_bench(monkeypatch, device, rates, runs):
    """bench.main with fake measurements on ``device``; returns the best recipes it passed."""
    asked = []
    monkeypatch.setattr(bench, "select_device", lambda name: device)
    monkeypatch.setattr(bench, "describe", lambda device: "fake")
    monkeypatch.setattr(bench, "throughput", lambda *args: rates)

    def time_to_target(device, target, max_epochs, best):
        asked.append(best)
        return runs

    monkeypatch.setattr(bench, "time_to_target", time_to_target)
    return asked


def test_the_cuda_branch_reports_the_fastest_run_with_the_cuda_recipe(monkeypatch, capsys):
    runs = {Baseline.name: H200_RUNS[Baseline.name]}
    runs["ours (blog = best recipe)"] = H200_RUNS["ours (blog recipe)"]
    asked = fake_bench(monkeypatch, CUDA, H200_RATES, runs)
    assert bench.main(["--device", "cuda"]) == 0
    out = capsys.readouterr().out
    assert asked == [Setup(128, 1e-3, graphed=True)]
    assert "best recipe here          batch 128, lr 0.001, constant lr, CUDA graph" in out
    assert "fastest package run       ours (blog = best recipe)" in out
    assert "28.95 x faster than the blog's" in out and "17.54 x the blog's images/s" in out


def test_the_cpu_branch_uses_the_cpu_recipe_and_reports_its_fastest(monkeypatch, capsys):
    cpu_runs = {  # book/maintainers.md, `bench --device cpu --target 100` on the 2-core CPU
        Baseline.name: Run(299.0, 12, 99.78, BLOG),
        "ours (blog recipe)": Run(122.8, 8, 99.57, BLOG),
        "ours (best recipe)": Run(109.9, 4, 99.75, Setup(32, 1e-3, 6)),
    }
    rates = {Baseline.name: 1000.0, "ours (package)": 2000.0}
    asked = fake_bench(monkeypatch, CPU, rates, cpu_runs)
    bench.main(["--device", "cpu", "--best-lr", "2e-3"])
    out = capsys.readouterr().out
    assert asked == [Setup(32, 2e-3, 6)]
    assert "fastest package run       ours (best recipe) [batch 32" in out
    assert "2.72 x faster" in out and "2.00 x the blog's images/s" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--best-step", "graph", "--device", "cpu"], "--best-step graph needs --device cuda"),
        (["--best-epochs", "-1"], "--best-epochs must be positive, or 0"),
        (["--best-lr", "0"], "--best-lr must be positive"),
    ],
)
def test_bad_best_options_are_refused_in_one_line(monkeypatch, capsys, argv, message):
    fake_bench(monkeypatch, CPU, {}, {})
    with pytest.raises(SystemExit):
        bench.main(argv)
    assert message in capsys.readouterr().err
