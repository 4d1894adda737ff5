"""`folder`: any image tree `<--source_path>/<class>/<images>` (your own data, no info files).

Classes are the subfolders sorted by name; the first floor(--folder_train_perc * C) train (default: the
first half) and the rest are the test set, evaluated all against all. Images directly inside each class
folder are used (.jpg .jpeg .png .bmp .gif .tif .tiff .webp, any case); hidden files and folders are skipped
and unreadable images are skipped with a warning.
"""
from __future__ import annotations

from datasets import REGISTRY
from datasets.base import class_folders_to_samples, sorted_class_folders
from datasets.layout import Layout
from utilities.errors import UsageError


@REGISTRY.register("folder")
def folder(root: str, opt) -> Layout:
    """The subfolders of --source_path sorted by name; the first --folder_train_perc of them train."""
    folders = sorted_class_folders(root)
    n_train = int(opt.folder_train_perc * len(folders))
    if not 1 <= n_train < len(folders):
        raise UsageError(
            f"--dataset folder: {root} has {len(folders)} class folder(s); --folder_train_perc "
            f"{opt.folder_train_perc} must leave at least one for training and one for testing"
        )
    paths, labels, names = class_folders_to_samples(folders)
    return Layout.first_classes(paths, labels, names, n_train)
