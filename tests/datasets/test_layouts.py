"""CARS196, Stanford Online Products, In-Shop and `folder` trees: counts, labels, splits, query/gallery
membership, the train/validation split on every layout, and one-line errors for broken layouts."""
import os

import pytest

import datasets
from tests.conftest import write_cub_tree
from tests.datasets.trees import inshop_rows, write_class_tree, write_image, write_inshop_tree, write_sop_tree
from utilities.errors import UsageError

CAR_NAMES = ["Audi A4 2012", "BMW M3 2010", "Acura TL 2008", "Volvo C30 2011", "Bentley 2009", "Chevy Volt 2012"]


def names_of(split):
    return [split.class_names[label] for label in split.labels]


def test_cars196_classes_sorted_by_name_first_half_trains_hidden_files_skipped(opt_factory, tmp_path):
    images = tmp_path / "cars196" / "images"
    tree = write_class_tree(str(images), CAR_NAMES, per_class=2)
    write_image(str(images / "Audi A4 2012" / "._img_0.jpg"))  # macOS resource fork
    (images / ".DS_Store").write_bytes(b"junk")
    write_image(str(images / ".Trash" / "img.jpg"))
    splits = datasets.select("cars196", opt_factory(), str(tmp_path))
    ordered = sorted(CAR_NAMES)
    assert splits["training"].class_names == ordered[:3] and splits["testing"].class_names == ordered[3:]
    assert sorted(splits["training"].paths) == sorted(p for c in ordered[:3] for p in tree[c])
    assert sorted(splits["testing"].paths) == sorted(p for c in ordered[3:] for p in tree[c])
    for split in (splits["training"], splits["testing"]):
        assert [os.path.basename(os.path.dirname(p)) for p in split.paths] == names_of(split)
        assert sorted(set(split.labels.tolist())) == [0, 1, 2]


def test_cars196_missing_images_folder_is_one_line(opt_factory, tmp_path):
    (tmp_path / "cars196").mkdir()
    with pytest.raises(UsageError, match=r"CARS196 layout expects .*cars196/images/<class folder>/<images>; folder not found$"):
        datasets.select("cars196", opt_factory(), str(tmp_path))


def sop_tree(tmp_path):
    # 3 super-classes; train classes 1-10, test classes 11-14, SOP-sized classes of 2-5 images.
    train = [(1, 1, 2), (2, 1, 3), (3, 1, 2), (4, 1, 4), (5, 2, 2), (6, 2, 5), (7, 2, 2), (8, 3, 3), (9, 3, 2), (10, 3, 2)]
    test = [(11, 1, 2), (12, 2, 3), (13, 3, 2), (14, 3, 2)]
    return write_sop_tree(str(tmp_path), train, test)


def test_online_products_split_labels_and_class_ids(opt_factory, tmp_path):
    written = sop_tree(tmp_path)
    splits = datasets.select("online_products", opt_factory(), str(tmp_path))
    train, test = splits["training"], splits["testing"]
    assert (len(train), len(test)) == (27, 9)
    assert train.paths == [p for p, _, _ in written["train"]] and test.paths == [p for p, _, _ in written["test"]]
    assert names_of(train) == [str(c) for _, c, _ in written["train"]]
    assert names_of(test) == [str(c) for _, c, _ in written["test"]]
    assert train.labels.min() == 0 and train.labels.max() == 9 and test.labels.max() == 3


def test_online_products_validation_split_by_class_is_per_super_class_and_in_range(opt_factory, tmp_path):
    sop_tree(tmp_path)
    splits = datasets.select("online_products", opt_factory("--use_tv_split", "--tv_split_perc", "0.5"), str(tmp_path))
    train, val = splits["training"], splits["validation"]
    # super-class 1 has classes 1-4, 2 has 5-7, 3 has 8-10: floor(0.5 * n) of each train.
    assert train.class_names == ["1", "2", "5", "8"] and val.class_names == ["3", "4", "6", "7", "9", "10"]
    for split in (train, val, splits["evaluation"]):  # the reference produced label -1 here
        assert split.labels.min() == 0 and split.labels.max() == split.n_classes - 1
    assert len(train) + len(val) == 27 and set(train.paths).isdisjoint(val.paths)


@pytest.mark.parametrize("content,message", [
    ("image_id class_id path\n1 1 a.JPG\n", r"Ebay_train\.txt:1: expected the header 'image_id class_id super_class_id path'"),
    ("image_id class_id super_class_id path\n1 1 1 a.JPG\n2 x 1 b.JPG\n", r"Ebay_train\.txt:3: expected .*got '2 x 1 b\.JPG'"),
])
def test_online_products_bad_info_file_is_one_line(opt_factory, tmp_path, content, message):
    sop_tree(tmp_path)
    (tmp_path / "online_products" / "Info_Files" / "Ebay_train.txt").write_text(content)
    with pytest.raises(UsageError, match=message):
        datasets.select("online_products", opt_factory(), str(tmp_path))


def test_online_products_missing_info_file_or_image(opt_factory, tmp_path):
    written = sop_tree(tmp_path)
    os.remove(written["test"][1][0])
    with pytest.raises(UsageError, match=r"^1 image\(s\) listed in .*Ebay_test\.txt are missing, e\.g\. .*super1_final/11_1\.JPG$"):
        datasets.select("online_products", opt_factory(), str(tmp_path))
    os.remove(tmp_path / "online_products" / "Info_Files" / "Ebay_test.txt")
    with pytest.raises(UsageError, match=r"Stanford Online Products layout expects .*Info_Files/Ebay_test\.txt; file not found"):
        datasets.select("online_products", opt_factory(), str(tmp_path))


def test_inshop_train_query_gallery_membership_and_joint_labels(opt_factory, tmp_path):
    rows = inshop_rows(n_train_items=4, n_test_items=3)
    paths = write_inshop_tree(str(tmp_path), rows)
    splits = datasets.select("inshop", opt_factory(), str(tmp_path))
    assert set(splits) == {"training", "evaluation", "testing_query", "testing_gallery"}
    query, gallery, train = splits["testing_query"], splits["testing_gallery"], splits["training"]
    by_status = {s: [p for p, (_, _, status) in zip(paths, rows) if status == s] for s in ("train", "query", "gallery")}
    assert train.paths == by_status["train"] and query.paths == by_status["query"]
    assert gallery.paths == by_status["gallery"]
    # every line is read: the reference lost the first image after the header
    assert train.paths[0].endswith("img/WOMEN/Dresses/id_00000001/00_1_front.jpg") and len(train) == 12
    # same label = same item id, in query and gallery alike
    assert query.class_names == gallery.class_names == ["id_00000005", "id_00000006", "id_00000007"]
    assert names_of(query) == [p.split("/")[-2] for p in query.paths]
    assert names_of(gallery) == [p.split("/")[-2] for p in gallery.paths]
    assert train.class_names == ["id_00000001", "id_00000002", "id_00000003", "id_00000004"]


def test_inshop_images_under_img_folder_and_validation_split(opt_factory, tmp_path):
    write_inshop_tree(str(tmp_path), inshop_rows(4, 2), image_base="Img")
    splits = datasets.select("inshop", opt_factory("--use_tv_split", "--tv_split_perc", "0.75"), str(tmp_path))
    assert splits["training"].class_names == ["id_00000001", "id_00000002", "id_00000003"]
    assert splits["validation"].class_names == ["id_00000004"] and len(splits["validation"]) == 3
    assert len(splits["testing_query"]) == 2 and len(splits["testing_gallery"]) == 4
    assert "testing" not in splits


@pytest.mark.parametrize("edit,message", [
    (lambda text: text.replace("18\n", "19\n", 1), r"line 1 announces 19 images but 18 are listed"),
    (lambda text: text.replace(" query", " probe", 1), r"list_eval_partition\.txt:15: expected '<image_name> <item_id> train\|query\|gallery'"),
    (lambda text: text.replace("evaluation_status", "status"), r"expected the image count on line 1 and the header"),
])
def test_inshop_broken_partition_file_is_one_line(opt_factory, tmp_path, edit, message):
    write_inshop_tree(str(tmp_path), inshop_rows(4, 2))
    listing = tmp_path / "inshop" / "Eval" / "list_eval_partition.txt"
    listing.write_text(edit(listing.read_text()))
    with pytest.raises(UsageError, match=message):
        datasets.select("inshop", opt_factory(), str(tmp_path))


def test_inshop_missing_partition_file(opt_factory, tmp_path):
    (tmp_path / "inshop").mkdir()
    with pytest.raises(UsageError, match=r"In-Shop layout expects .*inshop/Eval/list_eval_partition\.txt; file not found"):
        datasets.select("inshop", opt_factory(), str(tmp_path))


def test_folder_tree_is_the_source_path_with_a_configurable_split(opt_factory, tmp_path):
    tree = write_class_tree(str(tmp_path / "mine"), ["tulip", "daisy", "rose", "iris"], per_class=2)
    write_image(str(tmp_path / "mine" / "rose" / ".thumb.jpg"))
    (tmp_path / "mine" / "notes.txt").write_text("not a class")
    splits = datasets.select("folder", opt_factory(), str(tmp_path / "mine"))
    assert splits["training"].class_names == ["daisy", "iris"] and splits["testing"].class_names == ["rose", "tulip"]
    assert sorted(splits["testing"].paths) == sorted(tree["rose"] + tree["tulip"])
    splits = datasets.select("folder", opt_factory("--folder_train_perc", "0.75"), str(tmp_path / "mine"))
    assert splits["training"].class_names == ["daisy", "iris", "rose"] and splits["testing"].class_names == ["tulip"]
    with pytest.raises(UsageError, match=r"has 4 class folder\(s\); --folder_train_perc 0.2 must leave at least one"):
        datasets.select("folder", opt_factory("--folder_train_perc", "0.2"), str(tmp_path / "mine"))
    with pytest.raises(UsageError, match=r"^--source_path: folder not found: .*/nowhere$"):
        datasets.select("folder", opt_factory(), str(tmp_path / "nowhere"))


def layout_tree(kind, tmp_path):
    """(dataset name, source path, number of training images, of training classes) of a tiny tree."""
    if kind == "cub200":
        return "cub200", write_cub_tree(str(tmp_path), 8, 3), 12, 4
    if kind == "cars196":
        write_class_tree(str(tmp_path / "cars196" / "images"), [f"car {c}" for c in "abcdefgh"], 3)
        return "cars196", str(tmp_path), 12, 4
    if kind == "online_products":
        sop_tree(tmp_path)
        return "online_products", str(tmp_path), 27, 10
    if kind == "inshop":
        write_inshop_tree(str(tmp_path), inshop_rows(4, 2))
        return "inshop", str(tmp_path), 12, 4
    write_class_tree(str(tmp_path / "mine"), [f"c{c}" for c in range(8)], 3)
    return "folder", str(tmp_path / "mine"), 12, 4


@pytest.mark.parametrize("kind", ["cub200", "cars196", "online_products", "inshop", "folder"])
@pytest.mark.parametrize("by_samples", [False, True])
def test_train_validation_split_on_every_layout(opt_factory, tmp_path, kind, by_samples):
    name, source, n_images, n_classes = layout_tree(kind, tmp_path)
    full = datasets.select(name, opt_factory(), source)["training"]
    flags = ["--use_tv_split", "--tv_split_perc", "0.5"] + (["--tv_split_by_samples"] if by_samples else [])
    splits = datasets.select(name, opt_factory(*flags), source)
    train, val = splits["training"], splits["validation"]
    assert sorted(train.paths + val.paths) == sorted(full.paths) and len(full) == n_images
    assert set(train.paths).isdisjoint(val.paths) and splits["evaluation"].paths == train.paths
    for split in (train, val):
        assert split.labels.min() == 0 and split.labels.max() == split.n_classes - 1
        assert sorted(set(split.labels.tolist())) == list(range(split.n_classes))
    truth = dict(zip(full.paths, names_of(full)))
    assert all(truth[p] == c for split in (train, val) for p, c in zip(split.paths, names_of(split)))
    if by_samples:  # each class keeps round(0.5 n) >= 1 images; classes of one image give no validation
        assert train.n_classes == n_classes
        sizes = {c: names_of(full).count(c) for c in full.class_names}
        assert all(names_of(train).count(c) == max(1, round(0.5 * n)) for c, n in sizes.items())
    else:
        assert set(train.class_names).isdisjoint(val.class_names)
        assert train.n_classes + val.n_classes == n_classes


@pytest.mark.parametrize("flags", [["--tv_split_perc", "0.1"], ["--tv_split_perc", "0.9", "--tv_split_by_samples"]])
def test_a_split_that_leaves_one_side_empty_is_an_error(opt_factory, cub_tree, flags):
    with pytest.raises(UsageError, match=r"^--tv_split_perc .* leaves no (training|validation) data"):
        datasets.select("cub200", opt_factory("--use_tv_split", *flags), cub_tree(4, 2))

