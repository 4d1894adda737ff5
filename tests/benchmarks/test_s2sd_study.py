"""benchmarks/s2sd_study.py: the design is the documented fractional one, every command parses, a tiny study
(1 seed, 1 epoch, 2 settings) runs end to end into tables whose numbers are the runs', and a shorter budget read
off a longer run is the run that budget makes."""
import importlib.util
import json
import math
import os
import sys

import pytest

import main
import parameters
from tests.conftest import write_cub_tree
from tests.test_resume import TINY
from evaluation import results_table

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "s2sd_study.py")


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("s2sd_study", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_design_answers_each_claim_with_a_baseline_for_every_s2sd_group(study):
    tables = study.design(list(study.CELLS))
    sections = {(t.section, t.cell.name) for t in tables}
    assert sections == {("losses", "glyphs_scratch"), ("losses", "icons_pretrained"), ("dims", "glyphs_scratch"),
                        ("variants", "glyphs_scratch"), ("variants", "icons_pretrained"),
                        ("variants", "icons_scratch"), ("budget", "glyphs_scratch"), ("budget", "icons_pretrained")}
    for table in tables:
        groups = {s.group for s in table.settings}
        for setting in table.settings:
            base = study.Setting(setting.cell, setting.loss, setting.dim, "base")
            assert base.group in groups, setting.group
    losses = next(t for t in tables if t.section == "losses")
    assert {s.loss for s in losses.settings} == {"ms", "margin", "triplet"} and {s.dim for s in losses.settings} == {32}
    dims = next(t for t in tables if t.section == "dims")
    assert {s.dim for s in dims.settings} == {16, 32, 128} and {s.loss for s in dims.settings} == {"ms"}
    runs = study.runs_of(tables)
    assert len(runs) == 25
    glyphs = study.CELLS["glyphs_scratch"]
    assert runs[study.Setting(glyphs, "ms", 32, "s2sd")] == glyphs.long_epochs  # its short budget is read off it
    assert runs[study.Setting(glyphs, "margin", 32, "s2sd")] == glyphs.short_epochs


def test_every_command_parses_and_holds_out_validation_classes(study):
    parser = parameters.build_parser()
    for setting, epochs in study.runs_of(study.design(list(study.CELLS))).items():
        argv = study.command(setting, epochs, 2, "/out/runs", kernels=1)[2:]
        opt = parser.parse_args(argv)
        parameters.validate(opt)
        assert opt.use_tv_split and opt.n_epochs == epochs and opt.seed == 2 and opt.group == setting.group
        assert opt.savename == f"{setting.group}_s2" and opt.tau == [1000]  # a constant learning rate
        if setting.variant == "base":
            assert opt.loss != "s2sd"
        else:
            w, dims, feat = study.VARIANTS[setting.variant]
            assert (opt.loss, opt.loss_s2sd_w, opt.loss_s2sd_target_dims) == ("s2sd", w, [int(d) for d in dims])
            assert opt.loss_s2sd_feat_distill == feat
            if feat:
                assert opt.loss_s2sd_feat_distill_delay == setting.cell.steps_per_epoch
        assert opt.batch_mining == {"ms": "distance", "margin": "distance", "triplet": "semihard"}[setting.loss]


def test_difference_is_in_points_and_standard_errors(study):
    # stds with ddof 0 over 3 seeds: se = sqrt((1.0^2 + 2.0^2) / 2)
    assert study.difference((52.0, 1.0, 3), (50.0, 2.0, 3)) == f"+2.0 ({2 / math.sqrt(2.5):+.1f} se)"
    assert study.difference((50.0, 0.0, 1), (52.0, 0.0, 1)) == "-2.0"


@pytest.mark.slow
def test_a_tiny_study_runs_and_tabulates_its_runs(study, tmp_path, capsys):
    out = str(tmp_path / "study")
    groups = ["icons_scratch-ms32-base", "icons_scratch-ms32-s2sd"]
    argv = ["--out", out, "--cells", "icons_scratch", "--groups", *groups, "--seeds", "0", "--max_epochs", "1"]
    text = study.main(argv)
    runs = {}
    for group in groups:
        folder = os.path.join(out, "runs", "icons", f"{group}_s0")
        with open(os.path.join(folder, "summary.json")) as f:
            runs[group] = json.load(f)
        assert runs[group]["epochs"] == 1
        assert not [n for n in os.listdir(folder) if n.endswith(".pth.tar")]  # checkpoints are not kept
    assert os.path.isfile(os.path.join(out, "tables", "variants-icons_scratch.md"))
    base, s2sd = (runs[g]["last"] for g in groups)
    assert f"| icons_scratch-ms32-base | {100 * base['test/e_recall@1']:.1f} ± 0.0 | {100 * base['test/mAP@R']:.1f}" in text
    delta = 100 * s2sd["test/e_recall@1"] - 100 * base["test/e_recall@1"]
    assert f"| {100 * s2sd['val/e_recall@1']:.1f} ± 0.0 | {delta:+.1f} | " in text
    assert "Selected on the validation classes" in text
    capsys.readouterr()
    study.main(argv)  # a second call keeps the finished runs
    assert capsys.readouterr().out.count(": kept") == 2


@pytest.mark.slow
def test_a_shorter_budget_read_off_a_longer_run_is_the_shorter_run(tmp_path):
    """The study reads its short budget off its long runs (Result_Evaluations --at_epoch): with the default
    --tau (no decay within the budget) nothing in epoch 1 depends on --n_epochs."""
    source = write_cub_tree(str(tmp_path / "data"), n_classes=4, per_class=2)
    argv = list(TINY)
    for flag in ("--tau", "--gamma"):  # back to the defaults, as in the study
        at = argv.index(flag)
        del argv[at:at + 2]
    common = argv + ["--source_path", source, "--save_path", str(tmp_path / "runs")]
    short = main.main(common + ["--n_epochs", "1", "--savename", "short"])
    long = main.main(common + ["--n_epochs", "2", "--savename", "long"])
    names = ["train/loss", "test/e_recall@1", "test/nmi"]
    rows, _, _ = results_table.build([long["run_dir"]], names, at_epoch=1)
    for name in names:
        assert rows[0].runs[0].result(name, "last") == pytest.approx(short["last"][name], abs=1e-9), name
    assert long["last"]["train/loss"] != pytest.approx(short["last"]["train/loss"], abs=1e-9)  # epoch 2 differs
