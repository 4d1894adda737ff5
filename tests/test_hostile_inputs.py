"""Issue 12: bad or edge inputs a hostile but realistic user tries. Each reproduces the input of the report and
asserts the one line (`main.py: error: ...`), the exit status, and that nothing was written (a new run) or
the run folder and its checkpoint are unchanged (a resumed run).

`G` is the report's base command on the embedded glyphs. Runs that must train use a miniature CUB200 tree
instead (one step per epoch), as tests/test_resume.py does. As root (the CI container), file modes do not
stop reads and writes; the tests that need a folder to be unreadable or read-only then make the refusal that
the kernel would give a normal user (`deny_as_root`).
"""
import glob
import hashlib
import os
import shlex
import subprocess
import sys
import threading

import numpy as np
import pytest
from PIL import Image

import main
from tests.conftest import write_cub_tree
from utilities import resume, run_folder
from utilities.errors import EXIT_USAGE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
G = shlex.split("--dataset glyphs --arch slimresnet18_normalize --not_pretrained --n_epochs 1 --bs 64 --kernels 1 "
                "--no_train_metrics --tsne_points 0 --plot_every 0 --loss multisimilarity --embed_dim 16")
TINY_CUB = shlex.split("--dataset cub200 --arch slimresnet18_normalize --not_pretrained --embed_dim 8 --bs 4 "
                       "--samples_per_class 2 --no_train_metrics --kernels 0 --device cpu --loss multisimilarity "
                       "--plot_every 0 --tsne_points 0 --evaluation_metrics e_recall@1 --seed 0")


def error_line(capsys, argv):
    """Run main.main(argv) in this process; returns its stderr line and exit status (it must stop)."""
    with pytest.raises(SystemExit) as exit_info:
        main.main(argv)
    lines = [line for line in capsys.readouterr().err.splitlines() if "warn" not in line.lower()]
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    return lines[0], exit_info.value.code


def snapshot(folder):
    """Every file under `folder` with its content hash: equal snapshots mean nothing was written."""
    files = sorted(glob.glob(os.path.join(folder, "**"), recursive=True))
    return {f: hashlib.sha1(open(f, "rb").read()).hexdigest() for f in files if os.path.isfile(f)}


def deny_as_root(monkeypatch, path, call):
    """As root, make os.`call` ("listdir" or "access") refuse `path` as it would for a user without permission."""
    if os.geteuid() != 0:
        return
    real = getattr(os, call)
    path = os.path.abspath(path)

    def listdir(p="."):
        if os.path.abspath(p) == path:
            raise PermissionError(13, "Permission denied", p)
        return real(p)

    def access(p, mode, *args, **kwargs):
        return False if os.path.abspath(p) == path and mode & os.W_OK else real(p, mode, *args, **kwargs)

    monkeypatch.setattr(os, call, {"listdir": listdir, "access": access}[call])


@pytest.mark.parametrize("flags,message", [
    (["--embed_dim", "0"], "argument --embed_dim: 0 is out of range: must be an integer >= 1"),
    (["--embed_dim", "-4"], "argument --embed_dim: -4 is out of range: must be an integer >= 1"),
    (["--lr", "-1"], "argument --lr: -1 is out of range: must be a number > 0"),
    (["--lr", "nan"], "argument --lr: nan is out of range: must be a number > 0"),
    (["--loss", "s2sd", "--loss_s2sd_target_dims", "-5"],
     "argument --loss_s2sd_target_dims/--loss_distill_net_dims: -5 is out of range: must be an integer >= 1"),
    (["--loss", "s2sd", "--loss_s2sd_target_dims", "0"],
     "argument --loss_s2sd_target_dims/--loss_distill_net_dims: 0 is out of range: must be an integer >= 1"),
    (["--seed", "-1"], "argument --seed: -1 is out of range: must be an integer in [0, 4294967295]"),
    (["--kernels", "-1"], "argument --kernels: -1 is out of range: must be an integer >= 0"),
    (["--n_epochs", "0"], "argument --n_epochs: 0 is out of range: must be an integer >= 1"),
    (["--n_epochs", "-3"], "argument --n_epochs: -3 is out of range: must be an integer >= 1"),
    (["--loss", "s2sd", "--loss_s2sd_T", "0"],
     "argument --loss_s2sd_T/--loss_distill_T: 0 is out of range: must be a number > 0"),
    (["--loss", "s2sd", "--loss_s2sd_feat_w", "inf"],
     "argument --loss_s2sd_feat_w/--loss_distill_feat_w/--loss_s2sd_feat_distill_w: inf is out of range: "
     "must be a number >= 0"),
    (["--samples_per_class", "1"],
     "--samples_per_class 1: --loss multisimilarity learns from pairs of images of the same class in a batch, and "
     "there would be none in any step; use --samples_per_class 2 or more"),
    (["--samples_per_class", "1", "--loss", "npair", "--batch_mining", "npair"],
     "--samples_per_class 1: --loss npair learns from pairs"),
    (["--samples_per_class", "1", "--loss", "histogram"], "--samples_per_class 1: --loss histogram learns from pairs"),
    (["--samples_per_class", "1", "--loss", "quadruplet"],
     "--samples_per_class 1: --loss quadruplet learns from pairs"),
    (["--samples_per_class", "1", "--loss", "s2sd", "--loss_s2sd_source", "proxyanchor"],
     "--samples_per_class 1: --loss_s2sd_target multisimilarity learns from pairs"),
    (["--bs", "8", "--samples_per_class", "8"],
     "--bs 8 with --samples_per_class 8 puts one class in each batch: --loss multisimilarity needs images of two "
     "classes in a batch; use --bs of at least 16"),
    (["--savename", "../../x"], "--savename ../../x: the run folder's name must be one folder name (no '/', not '.' "
                                "or '..'); the run folder is always created inside --save_path/<dataset>"),
    (["--savename", "/tmp/elsewhere"], "--savename /tmp/elsewhere: the run folder's name must be one folder name"),
    (["--savename", ".."], "--savename ..: the run folder's name must be one folder name"),
    (["--log_online", "--group", "../../x"], "--group ../../x: the run folder's name must be one folder name"),
])
def test_bad_flag_values_stop_at_parse_time_with_one_line(tmp_path, capsys, flags, message):
    line, status = error_line(capsys, G + ["--save_path", str(tmp_path / "runs")] + flags)
    assert status == EXIT_USAGE
    assert line.startswith(f"main.py: error: {message}")
    assert not os.path.exists(tmp_path / "runs") and not os.path.exists(tmp_path / "x")


def test_a_pair_loss_with_one_image_per_class_was_a_silent_zero_loss_and_a_proxy_loss_still_runs(capsys):
    """--samples_per_class 1 is refused only for losses that compare images within a batch."""
    import parameters

    assert parameters.parse(G + ["--samples_per_class", "1", "--loss", "proxyanchor"]).samples_per_class == 1
    line, status = error_line(capsys, G + ["--samples_per_class", "1", "--loss", "margin"])
    assert status == 2 and "--loss margin learns from pairs" in line


def test_a_text_file_as_pretrained_path(tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("these are not weights\n")
    argv = [a for a in G if a != "--not_pretrained"] + ["--arch", "resnet18_normalize", "--pretrained_path",
                                                        str(notes), "--save_path", str(tmp_path / "runs")]
    line, status = error_line(capsys, argv)
    assert status == 2
    assert line == (f"main.py: error: weights file {notes}: not a PyTorch state dict, or a damaged one; pass the "
                    "backbone's ImageNet weights (.pth) or --not_pretrained")
    assert not os.path.exists(tmp_path / "runs")


@pytest.mark.parametrize("which", ["dataset folder", "class folder"])
def test_an_unreadable_dataset_or_class_folder(tmp_path, capsys, monkeypatch, which):
    source = write_cub_tree(str(tmp_path / "data"), n_classes=4, per_class=2)
    images = os.path.join(source, "cub200", "images")
    denied = images if which == "dataset folder" else os.path.join(images, "003.Bird_3")
    os.chmod(denied, 0)
    deny_as_root(monkeypatch, denied, "listdir")
    try:
        line, status = error_line(capsys, TINY_CUB + ["--source_path", source, "--save_path", str(tmp_path / "runs")])
    finally:
        os.chmod(denied, 0o755)
    assert status == 2
    assert line == (f"main.py: error: --source_path: cannot read {denied} (Permission denied); make the dataset's "
                    "folders and files readable")
    assert not os.path.exists(tmp_path / "runs")


def test_a_read_only_save_path_is_refused_before_anything_is_built(tmp_path, capsys, monkeypatch):
    save = tmp_path / "readonly"
    save.mkdir()
    os.chmod(save, 0o555)
    deny_as_root(monkeypatch, str(save), "access")
    built = []
    monkeypatch.setattr(main.datasets, "select", lambda *a, **k: built.append(a))
    try:
        line, status = error_line(capsys, G + ["--save_path", str(save)])
    finally:
        os.chmod(save, 0o755)
    assert status == 2 and not built
    assert line == (f"main.py: error: --save_path {save}: cannot write in {save} (permission denied); pass a folder "
                    "you can write to")
    assert os.listdir(save) == []


def test_a_file_as_save_path(tmp_path, capsys, monkeypatch):
    save = tmp_path / "a_file"
    save.write_text("mine\n")
    built = []
    monkeypatch.setattr(main.datasets, "select", lambda *a, **k: built.append(a))
    line, status = error_line(capsys, G + ["--save_path", str(save)])
    assert status == 2 and not built
    assert line == f"main.py: error: --save_path {save}: {save} is a file, not a folder; pass a folder"
    assert save.read_text() == "mine\n"


def test_runs_started_in_the_same_instant_get_their_own_folders(tmp_path):
    """make_run_dir by 8 threads at once, 25 times over: every run gets a folder of its own, none fails."""
    import parameters

    opt = parameters.parse(["--dataset", "glyphs", "--savename", "same", "--save_path", str(tmp_path)])
    for round_ in range(25):
        barrier, made, failures = threading.Barrier(8), [], []

        def create():
            barrier.wait()
            try:
                made.append(run_folder.make_run_dir(opt))
            except Exception as err:  # the defect: FileExistsError from a lost race
                failures.append(err)

        threads = [threading.Thread(target=create) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failures and len(set(made)) == 8
    assert len(os.listdir(tmp_path / "glyphs")) == 200


def test_a_truncated_jpeg_in_the_test_half_is_skipped_and_the_run_completes(tmp_path, capsys):
    """It crashed the first evaluation in a DataLoader worker ("image file is truncated"), an epoch in."""
    source = write_cub_tree(str(tmp_path / "data"), n_classes=4, per_class=3)
    cut = os.path.join(source, "cub200", "images", "003.Bird_3", "img_2.jpg")
    data = open(cut, "rb").read()
    open(cut, "wb").write(data[: len(data) // 2])
    with pytest.warns(UserWarning, match=rf"skipping unreadable image {cut} \(OSError: "):
        summary = main.main(TINY_CUB + ["--source_path", source, "--save_path", str(tmp_path / "runs"),
                                        "--n_epochs", "1", "--kernels", "1"])
    assert summary["epochs"] == 1 and 0 <= summary["last"]["test/e_recall@1"] <= 1


def test_a_random_bytes_checkpoint_gets_no_advice_to_unpickle_it(tmp_path, capsys):
    junk = tmp_path / "checkpoint_last.pth.tar"
    junk.write_bytes(np.random.default_rng(0).bytes(5000))
    line, status = error_line(capsys, ["--checkpoint", str(junk)])
    assert status == 2 and "weights_only" not in line
    assert line == (f"main.py: error: --checkpoint {junk}: not a checkpoint this program wrote, or a damaged one; "
                    "pass a run folder or its checkpoint_last.pth.tar")


def test_a_sixteen_bit_png_keeps_its_grey_levels(tmp_path):
    from datasets.base import FileDataset

    levels = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    Image.fromarray(levels).save(tmp_path / "deep.png")
    rgb = np.asarray(FileDataset([str(tmp_path / "deep.png")], [0], ["c"], None).load(0))
    assert rgb.shape == (32, 32, 3) and (rgb[..., 0] == rgb[..., 2]).all()
    np.testing.assert_array_equal(rgb[..., 0], np.round(levels / 257).astype(np.uint8))
    assert (rgb == 255).mean() < 0.01  # was 99.6 % white: values above 255 clipped


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A CUB run of 2 epochs (one step each) and its data; returns (run folder, source path)."""
    root = tmp_path_factory.mktemp("finished")
    source = write_cub_tree(str(root / "data"), n_classes=4, per_class=2)
    summary = main.main(TINY_CUB + ["--source_path", source, "--save_path", str(root / "runs"), "--n_epochs", "2",
                                    "--savename", "done"])
    return summary["run_dir"], source


def test_resuming_with_fewer_epochs_than_done_is_refused(finished_run, capsys):
    run_dir, _ = finished_run
    before = snapshot(run_dir)
    line, status = error_line(capsys, ["--checkpoint", run_dir, "--n_epochs", "1"])
    assert status == 2
    assert line == ("main.py: error: --n_epochs 1: the run has completed 2 epoch(s); pass --n_epochs 2 or more to "
                    "train longer, or leave it out to finish the run (2 epochs)")
    assert snapshot(run_dir) == before


def test_resuming_on_data_with_another_class_count_is_refused(finished_run, tmp_path, capsys):
    run_dir, _ = finished_run
    other = write_cub_tree(str(tmp_path / "other"), n_classes=6, per_class=2)
    before = snapshot(run_dir)
    line, status = error_line(capsys, ["--checkpoint", run_dir, "--n_epochs", "3", "--source_path", other])
    assert status == 2
    assert line == ("main.py: error: --checkpoint: the run was trained on 2 classes and 4 images, but the data "
                    "found now has 3 classes and 6; pass the --source_path the run was trained on")
    assert snapshot(run_dir) == before


def test_resuming_a_run_another_live_process_writes_is_refused(finished_run, capsys):
    run_dir, _ = finished_run
    holder = subprocess.Popen([sys.executable, "-c", "import sys; from utilities.run_lock import RunLock; "
                               "lock = RunLock(sys.argv[1]); lock.acquire(); print('held', flush=True); "
                               "sys.stdin.read(); lock.release()", run_dir],
                              cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        before = snapshot(run_dir)
        line, status = error_line(capsys, ["--checkpoint", run_dir, "--n_epochs", "3"])
    finally:
        holder.communicate("")
    assert status == 2
    assert line.startswith(f"main.py: error: {run_dir} is in use by another run (pid {holder.pid} on host ")
    assert line.endswith(f"wait for it to end. If no run is writing there any more (its machine went down), delete "
                         f"{run_dir}/.lock and start again")
    assert snapshot(run_dir) == before
    assert not os.path.exists(os.path.join(run_dir, ".lock"))  # released by its owner


@pytest.mark.slow
def test_two_resumes_of_the_same_run_at_once(tmp_path):
    """The report's defect 1: both exited 0 and every CSV got each epoch twice. Now exactly one resumes."""
    source = write_cub_tree(str(tmp_path / "data"), n_classes=4, per_class=2)
    args = TINY_CUB + ["--source_path", source, "--save_path", str(tmp_path / "runs"), "--savename", "twice"]
    run_dir = main.main(args + ["--n_epochs", "1"])["run_dir"]
    resume_cmd = [sys.executable, "main.py", "--checkpoint", run_dir, "--n_epochs", "2"]
    procs = [subprocess.Popen(resume_cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = sorted((p.wait(timeout=300), p.stderr.read()) for p in procs)
    assert [status for status, _ in results] == [0, 2], results
    refused = [line for line in results[1][1].splitlines() if "error" in line]
    assert len(refused) == 1 and refused[0].startswith(f"main.py: error: {run_dir} is in use by another run (pid ")
    with open(os.path.join(run_dir, "CSV_Logs", "Data_Test_discriminative_e_recall.csv")) as f:
        assert [row.split(",")[0] for row in f.read().splitlines()] == ["epoch", "0", "1"]
    assert resume.load(os.path.join(run_dir, resume.LAST_CHECKPOINT))["epoch"] == 1
    assert not os.path.exists(os.path.join(run_dir, ".lock"))
