from pathlib import Path

from vae_tutorial import paths


def test_environment_variables_win(monkeypatch, tmp_path):
    monkeypatch.setenv("VAE_TUTORIAL_DATA", str(tmp_path / "d"))
    monkeypatch.setenv("VAE_TUTORIAL_CACHE", str(tmp_path / "c"))
    assert paths.data_root() == tmp_path / "d"
    assert paths.cache_root() == tmp_path / "c"


def test_a_checkout_keeps_files_at_the_repository_root(monkeypatch):
    monkeypatch.delenv("VAE_TUTORIAL_DATA", raising=False)
    monkeypatch.delenv("VAE_TUTORIAL_CACHE", raising=False)
    root = Path(__file__).resolve().parent.parent
    assert paths.repository_root() == root
    assert paths.data_root() == root / "data"
    assert paths.cache_root() == root / ".cache"


def test_an_installed_copy_uses_the_user_cache_not_the_working_directory(monkeypatch, tmp_path):
    # as in Colab: the package lives in site-packages, the notebook runs anywhere
    monkeypatch.delenv("VAE_TUTORIAL_DATA", raising=False)
    monkeypatch.delenv("VAE_TUTORIAL_CACHE", raising=False)
    monkeypatch.setattr(paths, "repository_root", lambda: None)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert paths.data_root() == tmp_path / "vae-tutorial" / "data"
    assert paths.cache_root() == tmp_path / "vae-tutorial" / "checkpoints"
