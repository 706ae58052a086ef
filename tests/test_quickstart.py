from poisonlab.cli import main


def test_quickstart_tiny_prints_clean_and_poisoned_side_by_side(tmp_path, capsys):
    assert main(["quickstart", "--tiny", "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| clean model |" in out and "| poisoned model |" in out
    assert (tmp_path / "tiny-clean" / "metrics.json").exists()
    assert (tmp_path / "tiny-poisoned" / "metrics.json").exists()


def test_list_shows_every_registry_with_fields(capsys):
    assert main(["list", "--verbose"]) == 0
    out = capsys.readouterr().out
    for name in ("badnet", "insertsent", "syntactic", "full", "lora", "prefix", "prompt",
                 "ptuning", "adapter", "ia3", "minilm", "movie-snippets"):
        assert f"  {name}" in out or name in out
    assert "poison_rate" in out
