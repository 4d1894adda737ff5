"""RunLogger: CSV rows, reference W&B key names, and the direction of every logged value."""
import csv
import os

from evaluation.logger import RunLogger, lower_is_better


class Recorder:
    def __init__(self):
        self.calls = []

    def log(self, values, step):
        self.calls.append((step, values))


def test_best_and_last_follow_each_values_direction(tmp_path):
    logger = RunLogger(str(tmp_path), Recorder())
    for epoch, (loss, kl, recall, intra) in enumerate([(0.9, 0.02, 0.5, 0.3), (0.5, 0.05, 0.7, 0.2), (0.7, 0.01, 0.6, 0.4)]):
        logger.log_group("training", "loss", {"loss": loss, "kl": kl}, epoch)
        logger.log_metrics("testing", {"discriminative": {"e_recall@1": recall, "dists@intra": intra}}, epoch)
        logger.flush_online(epoch)
    assert logger.best() == {"train/loss": 0.5, "train/kl": 0.01, "test/e_recall@1": 0.7, "test/dists@intra": 0.2}
    assert logger.last() == {"train/loss": 0.7, "train/kl": 0.01, "test/e_recall@1": 0.6, "test/dists@intra": 0.4}
    assert logger.is_best("train/kl") and not logger.is_best("test/e_recall@1")
    step, values = logger.online.calls[-1]
    assert step == 2 and values == {"Train: loss": 0.7, "Train: loss: kl": 0.01,
                                    "Test: discriminative_e_recall: e_recall@1": 0.6,
                                    "Test: discriminative_dists: dists@intra": 0.4}
    with open(os.path.join(tmp_path, "CSV_Logs", "Data_Test_discriminative_e_recall.csv")) as f:
        assert list(csv.reader(f)) == [["epoch", "e_recall@1"], ["0", "0.5"], ["1", "0.7"], ["2", "0.6"]]


def test_direction_of_names():
    assert lower_is_better("feat_kl") and lower_is_better("train/time") and lower_is_better("degenerate_steps")
    assert not lower_is_better("test/nmi") and not lower_is_better("mAP@R")
    assert lower_is_better("dists@intra_over_inter") and not lower_is_better("dists@inter")
