"""The CUB200 folder layout, unreadable images, empty classes, splits and the class_random sampler."""
import os
from collections import Counter

import numpy as np
import pytest

import datasets
from datasets.samplers import ClassRandomSampler
from utilities.errors import UsageError


def test_cub_layout_counts_labels_and_split(opt_factory, cub_tree):
    source = cub_tree(n_classes=6, per_class=3)
    splits = datasets.select("cub200", opt_factory(), source)
    assert set(splits) == {"training", "evaluation", "testing"}
    train, test = splits["training"], splits["testing"]
    assert (len(train), len(test)) == (9, 9)
    assert train.class_names == ["001.Bird_1", "002.Bird_2", "003.Bird_3"]
    assert test.class_names == ["004.Bird_4", "005.Bird_5", "006.Bird_6"]
    assert sorted(set(train.labels.tolist())) == [0, 1, 2]
    label, image, index = test[4]
    assert (label, index) == (1, 4) and tuple(image.shape) == (3, 224, 224)
    assert os.path.basename(os.path.dirname(test.paths[4])) == "005.Bird_5"


def test_classes_are_ordered_by_number_not_by_name(opt_factory, tmp_path):
    from tests.conftest import write_cub_tree
    root = write_cub_tree(str(tmp_path), 4, 1)
    images = tmp_path / "cub200" / "images"
    os.rename(images / "002.Bird_2", images / "002.Zebra")
    os.rename(images / "003.Bird_3", images / "010.Albatross")
    splits = datasets.select("cub200", opt_factory(), root)
    assert splits["training"].class_names == ["001.Bird_1", "002.Zebra"]
    assert splits["testing"].class_names == ["004.Bird_4", "010.Albatross"]


def test_hidden_files_are_skipped(opt_factory, cub_tree):
    source = cub_tree(4, 2)
    folder = os.path.join(source, "cub200", "images", "001.Bird_1")
    open(os.path.join(folder, "._img_0.jpg"), "wb").write(b"mac resource fork")
    open(os.path.join(folder, ".DS_Store"), "wb").write(b"junk")
    assert len(datasets.select("cub200", opt_factory(), source)["training"]) == 4


def test_unreadable_image_is_skipped_with_a_warning_naming_it(opt_factory, cub_tree):
    source = cub_tree(4, 2)
    broken = os.path.join(source, "cub200", "images", "002.Bird_2", "broken.jpg")
    open(broken, "wb").write(b"this is not a jpeg")
    with pytest.warns(UserWarning, match=r"skipping unreadable image .*002\.Bird_2/broken\.jpg"):
        splits = datasets.select("cub200", opt_factory(), source)
    assert len(splits["training"]) == 4 and broken not in splits["training"].paths


def test_a_class_left_empty_is_an_error_naming_it(opt_factory, cub_tree):
    source = cub_tree(4, 1)
    bad = os.path.join(source, "cub200", "images", "003.Bird_3", "img_0.jpg")
    open(bad, "wb").write(b"corrupt")
    with pytest.warns(UserWarning), pytest.raises(UsageError, match=r"class '003\.Bird_3' has no readable image"):
        datasets.select("cub200", opt_factory(), source)


def test_missing_and_empty_dataset_folders(opt_factory, tmp_path):
    with pytest.raises(UsageError, match=r"dataset folder not found: .*nowhere/cub200"):
        datasets.select("cub200", opt_factory(), str(tmp_path / "nowhere"))
    (tmp_path / "cub200" / "images").mkdir(parents=True)
    with pytest.raises(UsageError, match=r"no class folders named NNN\.Class_Name in .*cub200/images"):
        datasets.select("cub200", opt_factory(), str(tmp_path))
    (tmp_path / "other" / "cub200").mkdir(parents=True)
    with pytest.raises(UsageError, match=r"expects .*other/cub200/images/<NNN\.Class_Name>"):
        datasets.select("cub200", opt_factory(), str(tmp_path / "other"))


def test_source_path_may_be_the_dataset_folder_itself(opt_factory, cub_tree):
    source = cub_tree(4, 1)
    assert len(datasets.select("cub200", opt_factory(), os.path.join(source, "cub200"))["testing"]) == 2


@pytest.mark.parametrize("by_samples", [False, True])
def test_train_validation_split(opt_factory, cub_tree, by_samples):
    flags = ["--use_tv_split", "--tv_split_perc", "0.5"] + (["--tv_split_by_samples"] if by_samples else [])
    splits = datasets.select("cub200", opt_factory(*flags), cub_tree(8, 4))
    train, val = splits["training"], splits["validation"]
    assert len(train) + len(val) == 16
    assert set(train.paths).isdisjoint(val.paths)
    if by_samples:
        assert (train.n_classes, val.n_classes) == (4, 4)
    else:
        assert (train.n_classes, val.n_classes) == (2, 2) and set(train.class_names).isdisjoint(val.class_names)
    assert train.labels.max() == train.n_classes - 1 and val.labels.max() == val.n_classes - 1


def make_sampler(sizes, bs, spc, seed=0):
    image_dict, start = {}, 0
    for c, n in enumerate(sizes):
        image_dict[c] = list(range(start, start + n))
        start += n
    return ClassRandomSampler(np.repeat(np.arange(len(sizes)), sizes), bs, spc, seed), image_dict


def test_class_random_batches_have_distinct_classes_and_images():
    sampler, image_dict = make_sampler([5] * 10 + [1, 2], bs=12, spc=3)
    owner = {i: c for c, idx in image_dict.items() for i in idx}
    batches = list(sampler)
    assert len(batches) == len(sampler) == 54 // 12
    for batch in batches:
        assert len(batch) == 12
        classes = Counter(owner[i] for i in batch)
        assert len(classes) == 4 and set(classes.values()) == {3}
        for c in classes:
            members = [i for i in batch if owner[i] == c]
            if len(image_dict[c]) >= 3:
                assert len(set(members)) == 3
            else:
                assert set(members) == set(image_dict[c])


def test_class_random_is_reproducible_and_resumable():
    a, _ = make_sampler([4] * 20, bs=8, spc=2, seed=7)
    b, _ = make_sampler([4] * 20, bs=8, spc=2, seed=7)
    first = list(a)
    assert first == list(b)
    state = a.state_dict()
    expected = list(a)
    b.load_state_dict(state)
    assert list(b) == expected != first


def test_class_random_refuses_impossible_batches():
    with pytest.raises(UsageError, match="needs 6 classes per batch, but the training split has 4"):
        make_sampler([3] * 4, bs=12, spc=2)
    with pytest.raises(UsageError, match="larger than the training split"):
        make_sampler([1] * 10, bs=20, spc=2)
