"""Flag names, defaults, the README aliases and one-line errors for bad flags."""
import shlex

import pytest

import parameters

SEED_README = (
    "--source /data --n_epochs 150 --log_online --project P --group G --seed 0 --gpu 0 --bs 112 --loss s2sd "
    "--loss_distill_source multisimilarity --loss_distill_target multisimilarity --loss_distill_T 1 "
    "--loss_distill_w 50 --loss_distill_net_dims 512 1024 1536 2048 --loss_distill_match_feats "
    "--loss_distill_feat_w 50 --arch resnet50_frozen_normalize --embed_dim 128 --loss_distill_max_feat_iter 1000"
)
SAMPLE_RUNS = (
    "--source_path /data --n_epochs 150 --log_online --project P --group G --seed 0 --gpu 0 --bs 112 --loss s2sd "
    "--loss_s2sd_source multisimilarity --loss_s2sd_target multisimilarity --loss_s2sd_T 1 --loss_s2sd_w 50 "
    "--loss_s2sd_target_dims 512 1024 1536 2048 --loss_s2sd_feat_distill --loss_s2sd_feat_w 50 "
    "--arch resnet50_frozen_normalize --embed_dim 128 --loss_s2sd_feat_distill_delay 1000"
)


def test_seed_readme_command_parses_to_the_sample_runs_settings():
    readme = vars(parameters.parse(shlex.split(SEED_README)))
    sample = vars(parameters.parse(shlex.split(SAMPLE_RUNS)))
    assert readme == sample
    assert readme["source_path"] == "/data" and readme["loss_s2sd_feat_distill"] is True
    assert readme["loss_s2sd_target_dims"] == [512, 1024, 1536, 2048]
    assert readme["loss_s2sd_feat_distill_delay"] == 1000


@pytest.mark.parametrize("alias,real,value", [
    ("--loss_distill_T", "loss_s2sd_T", 3.0),
    ("--loss_distill_w", "loss_s2sd_w", 7.0),
    ("--loss_distill_feat_w", "loss_s2sd_feat_w", 5.0),
    ("--loss_s2sd_feat_distill_w", "loss_s2sd_feat_w", 5.0),
    ("--loss_distill_max_feat_iter", "loss_s2sd_feat_distill_delay", 12),
    ("--source", "source_path", "/x"),
])
def test_each_alias_sets_the_real_flag(alias, real, value):
    assert getattr(parameters.parse([alias, str(value)]), real) == value


def test_reference_defaults():
    opt = parameters.parse([])
    expected = dict(dataset="cub200", lr=1e-5, fc_lr=-1, decay=4e-4, n_epochs=150, kernels=6, bs=112, seed=1,
                    scheduler="step", gamma=0.3, tau=[1000], optim="adam", loss="margin", batch_mining="distance",
                    embed_dim=128, arch="resnet50_frozen_normalize", storage_metrics=["e_recall@1"],
                    evaltypes=["discriminative"], savename="group_plus_seed", data_sampler="class_random",
                    samples_per_class=2, loss_s2sd_source="multisimilarity", loss_s2sd_target="multisimilarity",
                    loss_s2sd_T=1.0, loss_s2sd_w=50.0, loss_s2sd_target_dims=[512, 1024, 1536, 2048],
                    loss_s2sd_feat_w=50.0, loss_s2sd_feat_distill_delay=1000, loss_margin_beta=1.2,
                    loss_margin_beta_lr=5e-4, loss_multisimilarity_neg_weight=40, miner_distance_lower_cutoff=0.5,
                    project="Sample_Project", group="Sample_Group", device="auto", pretrained_path=None)
    assert {k: getattr(opt, k) for k in expected} == expected


def error_line(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        parameters.parse(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_prefix_abbreviations_are_off(capsys):
    assert "unrecognized arguments: --sourc" in error_line(capsys, ["--sourc", "/x"])


@pytest.mark.parametrize("argv,message", [
    (["--loss", "nope"], "--loss: unknown loss 'nope'; choose one of: angular, arcface, circle, contrastive, histogram, "
                         "lifted, margin, multisimilarity, npair, proxyanchor, proxynca, quadruplet, s2sd, snr, softmax, "
                         "softtriplet, triplet"),
    (["--batch_mining", "nope"], "--batch_mining: unknown batch miner 'nope'; choose one of: distance, epdn, ephn, epshn, "
                                 "intra_random, lifted, npair, parametric, random, random_distance, rho_distance, "
                                 "semihard, softhard"),
    (["--arch", "vgg16"], "--arch: unknown architecture 'vgg16' (from 'vgg16'); choose one of: "),
    (["--dataset", "mnist"], "--dataset: unknown dataset 'mnist'; choose one of: cars196, cub200, folder, glyphs, icons, inshop, online_products"),
    (["--bs", "100", "--samples_per_class", "3"], "--bs 100 is not divisible by --samples_per_class 3"),
    (["--loss", "s2sd", "--loss_s2sd_source", "s2sd"], "--loss_s2sd_source: unknown loss 's2sd'; choose one of: "),
    (["--storage_metrics", "nmi", "--evaluation_metrics", "e_recall@1"], "--storage_metrics: 'nmi' is not computed"),
    (["--wandb_key", "abc"], "--wandb_key is refused"),
    (["--scheduler", "cosine"], "argument --scheduler: invalid choice: 'cosine'"),
])
def test_bad_flags_give_one_line_and_status_2(capsys, argv, message):
    assert message in error_line(capsys, argv)


TRIPLET_MINERS = ("distance, epdn, ephn, epshn, intra_random, parametric, random, random_distance, rho_distance, "
                  "semihard, softhard")


@pytest.mark.parametrize("argv,message", [
    (["--loss", "triplet", "--batch_mining", "npair"],
     f"--batch_mining npair cannot serve --loss triplet; allowed: {TRIPLET_MINERS}"),
    (["--loss", "margin", "--batch_mining", "lifted"],
     f"--batch_mining lifted cannot serve --loss margin; allowed: {TRIPLET_MINERS}"),
    (["--loss", "npair", "--batch_mining", "distance"], "--batch_mining distance cannot serve --loss npair; allowed: npair"),
    (["--loss", "angular", "--batch_mining", "lifted"], "--batch_mining lifted cannot serve --loss angular; allowed: npair"),
    (["--loss", "lifted", "--batch_mining", "npair"], "--batch_mining npair cannot serve --loss lifted; allowed: lifted"),
    (["--loss", "s2sd", "--loss_s2sd_target", "npair", "--batch_mining", "distance"],
     "--batch_mining distance cannot serve --loss_s2sd_target npair; allowed: npair"),
    (["--loss", "s2sd", "--loss_s2sd_source", "quadruplet", "--batch_mining", "npair"],
     f"--batch_mining npair cannot serve --loss_s2sd_source quadruplet; allowed: {TRIPLET_MINERS}"),
])
def test_a_miner_the_loss_does_not_allow_is_refused(capsys, argv, message):
    assert message in error_line(capsys, argv)


@pytest.mark.parametrize("argv", [
    ["--loss", "npair", "--batch_mining", "npair"],
    ["--loss", "s2sd", "--loss_s2sd_source", "angular", "--loss_s2sd_target", "npair", "--batch_mining", "npair"],
    ["--loss", "s2sd", "--loss_s2sd_source", "lifted", "--loss_s2sd_target", "softmax", "--batch_mining", "lifted"],
    ["--loss", "proxyanchor", "--batch_mining", "npair"],  # a loss without a miner ignores --batch_mining
])
def test_a_miner_of_the_right_kind_is_accepted(argv):
    assert parameters.parse(argv).batch_mining == argv[-1]
