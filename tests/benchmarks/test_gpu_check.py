"""benchmarks/gpu_check.sh and gpu_check.py without a GPU: the script parses, every check the script calls
exists, a check refuses to run without CUDA, the summary reads the logs the script leaves, and the quick
checks pass as a rehearsal on the CPU. The checks proper need CUDA; they run on a GPU machine, never here."""
import json
import os
import re
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "benchmarks", "gpu_check.sh")
CHECKER = os.path.join(ROOT, "benchmarks", "gpu_check.py")


def run_checker(*args):
    return subprocess.run([sys.executable, CHECKER, *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_the_script_parses_and_calls_every_check_once():
    subprocess.run(["bash", "-n", SCRIPT], check=True)
    from benchmarks import gpu_check

    called = re.findall(r"^check (\w+) \d+", open(SCRIPT).read(), re.M)
    assert sorted(called) == sorted(gpu_check.CHECKS)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_a_check_without_cuda_fails_with_the_reason():
    result = run_checker("bf16_step", "--work", "unused")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == "AssertionError: no CUDA device"


def test_the_summary_reads_passes_skips_failures_and_the_benchmark(tmp_path):
    (tmp_path / "bf16_step.log").write_text("loss rel 1e-4\nCHECK bf16_step: PASS\n")
    (tmp_path / "resume.log").write_text("SKIP resume: out of the 530 s budget\n")
    (tmp_path / "metrics.log").write_text("Traceback ...\nRuntimeError: CUDA error\n")
    column = dict(train_img_s=1000.0, ratio_to_model_only=0.9, model_only_img_s=1111.0, eval_s=2.5, host_s=0.5,
                  projected_150_epochs_min=12.0)
    slower = dict(column, train_img_s=500.0, eval_s=10.0, host_s=3.0, projected_150_epochs_min=36.0)
    (tmp_path / "recipe_speed.json").write_text(json.dumps({"this_branch": column, "items_1_to_4_off": slower}))

    lines = run_checker("summary", "--logs", str(tmp_path)).stdout.splitlines()
    assert "bf16_step      CHECK bf16_step: PASS" in lines
    assert "resume         SKIP resume: out of the 530 s budget" in lines
    assert "metrics        FAIL: RuntimeError: CUDA error" in lines
    assert "image_store    NOT RUN" in lines
    assert "training img/s                 1000  (items 1-4 off: 500)" in lines
    assert "projected 150-epoch minutes    12.0  (goal <= 15; items 1-4 off: 36.0, gain 3.00x)" in lines


@pytest.mark.slow
@pytest.mark.parametrize("check", ["fp16_scaler", "image_store", "metrics", "nan_stop", "profile"])
def test_a_rehearsal_on_the_cpu_passes(check, tmp_path):
    """The quick checks' own code runs on the CPU (`--rehearse`), so it cannot rot between GPU loans; resume, ddp
    and bf16_step (a minute and more each) are rehearsed by `GPU_CHECK_REHEARSE=1 bash benchmarks/gpu_check.sh`."""
    result = subprocess.run([sys.executable, CHECKER, check, "--rehearse", "--work", str(tmp_path)],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"CHECK {check}: PASS (rehearsal on the CPU: " in result.stdout
