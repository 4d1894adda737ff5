"""Sample_Runs/: every command of the paper sweeps parses, has the published recipe, and builds with --dry_run;
the parity variant (S2SD_Parity.sh) is every sweep's commands with --reference_parity and groups suffixed _PARITY.

The scripts run for real under bash with PYTHON pointing at a recorder, which writes each command line instead
of training; the recorded commands are then parsed, checked, and run through main.py with --dry_run on miniature trees of
CUB200, CARS196 and SOP.
"""
import glob
import json
import os
import subprocess
import sys

import pytest

import main
import parameters
from tests.conftest import write_cub_tree

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = sorted(glob.glob(os.path.join(ROOT, "Sample_Runs", "S2SD_*.sh")))
PARITY_SCRIPT = os.path.join(ROOT, "Sample_Runs", "S2SD_Parity.sh")
PAPER_SCRIPTS = [s for s in SCRIPTS if s != PARITY_SCRIPT]
COMMANDS_PER_SEED = {"S2SD_CUB200.sh": 6, "S2SD_CARS196.sh": 6, "S2SD_SOP.sh": 6, "S2SD_Ablation.sh": 45,
                     "S2SD_Parity.sh": 63}
RECORDER = "import json, os, sys\nwith open(os.environ['RECORD'], 'a') as f:\n    f.write(json.dumps(sys.argv[2:]) + '\\n')\n"


def record(tmp_path, script, *args, **env):
    recorder = tmp_path / "record.py"
    recorder.write_text(RECORDER)
    out = tmp_path / (os.path.basename(script) + "".join(args) + ".jsonl")
    settings = dict(os.environ, PYTHON=f"{sys.executable} {recorder}", RECORD=str(out), DATA="/data", SAVE="/save")
    settings.update(env)
    subprocess.run(["bash", script, *args], env=settings, check=True, timeout=60)
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_the_scripts_are_valid_bash():
    assert sorted(map(os.path.basename, SCRIPTS)) == sorted(COMMANDS_PER_SEED)
    for script in SCRIPTS + [os.path.join(ROOT, "Sample_Runs", "_common.sh")]:
        subprocess.run(["bash", "-n", script], check=True)


@pytest.mark.parametrize("script", SCRIPTS, ids=os.path.basename)
def test_every_command_parses_and_sweeps_the_seeds(tmp_path, script):
    commands = record(tmp_path, script, SEEDS="0 1", EXTRA="--dry_run --kernels 2", ONLINE="--log_online")
    assert len(commands) == 2 * COMMANDS_PER_SEED[os.path.basename(script)]
    parser = parameters.build_parser()
    groups = set()
    for argv in commands:
        opt = parser.parse_args(argv)  # every flag exists
        parameters.validate(opt)  # names, miner/loss pairs, bs/spc
        assert (opt.source_path, opt.save_path, opt.n_epochs, opt.bs, opt.gpu) == ("/data", "/save", 150, 112, [0])
        assert opt.dry_run and opt.kernels == 2 and opt.log_online and opt.project == "S2SD_Paper"
        assert opt.savename == f"{opt.group}_s{opt.seed}"
        groups.add(opt.group)
        assert opt.arch in ("resnet50_frozen_normalize", "bninception_normalize")
        assert opt.embed_dim == (128 if "R50-128" in opt.group or "_ABL_" in opt.group else 512)
    assert sorted(parser.parse_args(c).seed for c in commands) == [0] * len(groups) + [1] * len(groups)
    assert len(groups) == COMMANDS_PER_SEED[os.path.basename(script)]


def recipes(tmp_path):
    commands = []
    for script in PAPER_SCRIPTS:
        commands += record(tmp_path, script, SEEDS="0")
    return {opt.group: opt for opt in map(parameters.build_parser().parse_args, commands)}


def test_the_recipes_are_the_papers(tmp_path):
    runs = recipes(tmp_path)
    for group, opt in runs.items():
        s2sd = opt.loss == "s2sd"
        if group.endswith(("_S2SD", "_MSDF", "_MSDFA")):
            assert s2sd and opt.loss_s2sd_feat_distill and opt.loss_s2sd_feat_distill_delay == 1000
            assert opt.loss_s2sd_feat_w == (5 if group.startswith("SOP") else 50)
        if s2sd:
            assert (opt.loss_s2sd_T, opt.loss_s2sd_w) == (1, 50)
            assert opt.loss_s2sd_target_dims == ([2048] if group.endswith("_DSD") else [512, 1024, 1536, 2048])
        if group.endswith(("_DSD", "_MSD")):
            assert s2sd and not opt.loss_s2sd_feat_distill and not opt.loss_s2sd_pool_aggr
    for tag, dataset in (("CUB", "cub200"), ("CARS", "cars196")):
        for net in ("R50-128", "R50-512", "BNI-512"):
            base, s2sd = runs[f"{tag}_{net}_MS"], runs[f"{tag}_{net}_MS_S2SD"]
            assert base.dataset == s2sd.dataset == dataset and base.loss == "multisimilarity"
            assert (s2sd.loss_s2sd_source, s2sd.loss_s2sd_target, s2sd.loss_s2sd_pool_aggr) == (
                "multisimilarity", "multisimilarity", True)
    for net in ("R50-128", "R50-512", "BNI-512"):
        base, s2sd = runs[f"SOP_{net}_Margin"], runs[f"SOP_{net}_Margin_S2SD"]
        assert base.dataset == s2sd.dataset == "online_products"
        assert (base.loss, base.batch_mining, s2sd.batch_mining) == ("margin", "distance", "distance")
        assert (s2sd.loss_s2sd_source, s2sd.loss_s2sd_target, s2sd.loss_s2sd_pool_aggr) == ("margin", "margin", False)
    for tag in ("CUB", "CARS", "SOP"):
        for base, loss, miner, beta in (("Margin", "margin", "distance", 1.2), ("RMargin", "margin", "rho_distance", 0.6),
                                        ("MS", "multisimilarity", "distance", 1.2)):
            variants = [runs[f"{tag}_ABL_{base}{v}"] for v in ("", "_DSD", "_MSD", "_MSDF", "_MSDFA")]
            assert variants[0].loss == loss and all(v.loss_s2sd_source == loss for v in variants[1:])
            assert all((v.batch_mining, v.loss_margin_beta) == (miner, beta) for v in variants)
            assert [v.loss_s2sd_pool_aggr for v in variants] == [False, False, False, False, True]


def with_parity(argv):
    """A paper command as its parity variant runs it: group and run folder suffixed _PARITY, --reference_parity."""
    argv = list(argv)
    group = argv[argv.index("--group") + 1]
    argv[argv.index("--group") + 1] = f"{group}_PARITY"
    argv[argv.index("--savename") + 1] = argv[argv.index("--savename") + 1].replace(group, f"{group}_PARITY")
    return argv + ["--reference_parity"]


def test_the_parity_variant_is_every_paper_command_with_the_flag(tmp_path):
    sweeps = ["CUB200", "CARS196", "SOP", "Ablation"]  # the parity script's order
    paper = {sweep: record(tmp_path, os.path.join(ROOT, "Sample_Runs", f"S2SD_{sweep}.sh"), SEEDS="0")
             for sweep in sweeps}
    parity = record(tmp_path, PARITY_SCRIPT, SEEDS="0")  # test_every_command_parses... sweeps its seeds
    assert parity == [with_parity(argv) for sweep in sweeps for argv in paper[sweep]]
    assert all(parameters.parse(argv).reference_parity for argv in parity[:3])
    assert record(tmp_path, PARITY_SCRIPT, "SOP", SEEDS="0") == [with_parity(argv) for argv in paper["SOP"]]
    failed = subprocess.run(["bash", PARITY_SCRIPT, "MNIST"], capture_output=True, text=True, timeout=60)
    assert failed.returncode == 2
    assert failed.stderr == "S2SD_Parity.sh: unknown sweep 'MNIST'; choose from CUB200 CARS196 SOP Ablation\n"


@pytest.fixture(scope="module")
def trees_for_bs_112(tmp_path_factory):
    """Miniature CUB200, CARS196 and SOP trees whose training halves fill one batch of 112 at 2 per class."""
    from tests.datasets.trees import write_class_tree, write_sop_tree

    root = str(tmp_path_factory.mktemp("sample_runs_data"))
    write_cub_tree(root, n_classes=112, per_class=2)
    write_class_tree(os.path.join(root, "cars196", "images"), [f"Car {k:03d}" for k in range(112)], per_class=2)
    write_sop_tree(root, [(k, k % 3 + 1, 2) for k in range(1, 57)], [(k, k % 3 + 1, 2) for k in range(57, 61)])
    return root


@pytest.mark.slow
def test_every_command_builds_with_dry_run(tmp_path, trees_for_bs_112, capsys):
    built = {}
    for script in SCRIPTS:
        for argv in record(tmp_path, script, SEEDS="0", DATA=trees_for_bs_112, SAVE=str(tmp_path / "runs"),
                           EXTRA="--dry_run --not_pretrained --device cpu --kernels 0"):
            opt = parameters.build_parser().parse_args(argv)
            summary = main.main(argv)
            assert summary["dry_run"] is True and summary["run_dir"] is None
            out = capsys.readouterr().out
            assert f"Backbone:\t {opt.arch.upper()}" in out and "nothing trained" in out
            built[opt.dataset] = built.get(opt.dataset, 0) + 1
    assert built == {"cub200": 42, "cars196": 42, "online_products": 42}  # the paper's and the parity commands
    assert not os.path.exists(tmp_path / "runs")  # a dry run writes nothing
