"""benchmarks/image_check_cost.py on a few tiny images: the verdicts are as expected and the table prints (a
smoke run; the cost figures come from the script, never from a test)."""


def test_only_the_full_check_catches_the_truncated_file_and_the_table_prints(load_benchmark, capsys):
    assert load_benchmark("image_check_cost").main(["--n", "12", "--size", "64", "48"]) == 0
    out = capsys.readouterr().out
    assert "the truncated file is caught by the full check only" in out
    for name in ("header scan (before)", "full decode check, first run", "full decode check, cached"):
        assert f"{name:40s}" in out
