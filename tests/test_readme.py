"""The README's two commands: the quickstart runs (shortened to one epoch) and the test command is .ci/run's."""
import os
import re
import shlex

import pytest

import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def block(name: str) -> str:
    text = open(os.path.join(ROOT, "README.md")).read()
    match = re.search(rf"<!-- {name} -->\s*```bash\n(.*?)```\s*<!-- /{name} -->", text, re.S)
    assert match, f"README.md has no <!-- {name} --> block"
    return match.group(1)


def quickstart_argv() -> list:
    command = block("quickstart").replace("\\\n", " ")
    line = next(part for part in command.split("\n") if part.strip().startswith("python main.py"))
    return shlex.split(line)[2:]


def test_ci_runs_the_readme_test_command():
    command = block("tests").strip()
    ci = open(os.path.join(ROOT, ".ci", "run")).read()
    assert command.startswith("python3.11 -m venv .venv && . .venv/bin/activate && ")
    assert command.split(". .venv/bin/activate && ", 1)[1] in ci.splitlines()


@pytest.mark.slow
def test_quickstart_runs_and_leaves_a_run_folder(tmp_path, capsys):
    argv = quickstart_argv()
    assert argv[argv.index("--dataset") + 1] == "glyphs" and argv[argv.index("--loss") + 1] == "s2sd"
    argv[argv.index("--n_epochs") + 1] = "1"
    argv[argv.index("--save_path") + 1] = str(tmp_path)
    summary = main.main(argv + ["--tsne_points", "0"])
    run_dir = summary["run_dir"]
    for name in ("summary.json", "checkpoint_last.pth.tar", "checkpoint_Test_discriminative_e_recall@1.pth.tar",
                 os.path.join("CSV_Logs", "Data_Test_discriminative_e_recall.csv")):
        assert os.path.isfile(os.path.join(run_dir, name)), name
    assert summary["last"]["test/e_recall@1"] > 0.5  # one epoch from scratch already retrieves most glyphs
    assert "Epoch 1/1 | loss" in capsys.readouterr().out
