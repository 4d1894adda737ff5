"""The decoded-image store and the loaders of datasets/loading.py: same pixels as the PIL path, disk cache,
resumable batch-wise augmentation, and the --data_cache decision."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

import datasets
from datasets import image_store, loading
from datasets.image_store import LazyStore, StoreSpec
from tests.conftest import make_opt

FLAGS = ["--dataset", "cub200", "--arch", "resnet50", "--not_pretrained", "--bs", "4", "--resolution", "24",
         "--no_train_metrics"]


def write_photo_tree(root, sizes, per_class=2):
    """A CUB200 tree whose class c holds `per_class` textured JPEGs of size sizes[c] (width, height)."""
    rng = np.random.default_rng(0)
    for c, (w, h) in enumerate(sizes, start=1):
        folder = os.path.join(root, "cub200", "images", f"{c:03d}.Bird_{c}")
        os.makedirs(folder, exist_ok=True)
        for i in range(per_class):
            y, x = np.mgrid[0:h, 0:w]
            pixels = np.stack([x * 255 // w, y * 255 // h, rng.integers(0, 255, (h, w))], -1).astype(np.uint8)
            Image.fromarray(pixels).save(os.path.join(folder, f"img_{i}.jpg"), quality=90)
    return root


SIZES = [(40, 30), (30, 40), (50, 20), (25, 25), (64, 48), (33, 47), (41, 29), (60, 35)]


@pytest.fixture
def photo_tree(tmp_path):
    return write_photo_tree(str(tmp_path / "data"), SIZES)


def test_cached_evaluation_crops_equal_the_pil_path_exactly(photo_tree, tmp_path):
    # Tolerance 0: the store decodes with PIL and applies the very Resize + CenterCrop steps of the streaming
    # transform to the same uint8 tensor, and the float conversion is the same operation on a batch.
    opt = make_opt(*FLAGS, "--data_cache", "ram", "--data_cache_dir", str(tmp_path / "cache"))
    splits = datasets.select("cub200", opt, photo_tree)
    loaders = loading.build_loaders(opt, splits, torch.device("cpu"))
    streamed = torch.stack([splits["testing"][i][1] for i in range(len(splits["testing"]))])
    labels, stored = zip(*[(lab, img) for lab, img, _ in loaders["testing"]["query"]])
    assert torch.equal(torch.cat(stored), streamed) and streamed.shape[1:] == (3, 24, 24)
    assert torch.equal(torch.cat(labels), torch.as_tensor(splits["testing"].labels))


def test_the_training_store_keeps_each_image_as_decoded_and_pads_by_repeating_the_border(photo_tree):
    paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(photo_tree) for f in fs)
    store = image_store.build(paths, StoreSpec("train", 24, 27), torch.device("cpu"), decode_device=None, threads=2)
    assert store.images.shape == (16, 3, 54, 54)  # long sides at most 2 x 27 = 54: 64 x 48 shrinks to 54 x 40
    for i, path in enumerate(paths):
        decoded = image_store.decode_pil(path)
        h, w = store.stored_sizes[i].tolist()
        assert store.original_sizes[i].tolist() == list(decoded.shape[1:])
        if max(decoded.shape[1:]) <= 54:
            assert torch.equal(store.images[i, :, :h, :w], decoded)
        assert torch.equal(store.images[i, :, h:, :w], store.images[i, :, h - 1:h, :w].expand(-1, 54 - h, -1))
        assert torch.equal(store.images[i, :, :, w:], store.images[i, :, :, w - 1:w].expand(-1, -1, 54 - w))


def test_a_later_run_loads_the_disk_cache_and_a_changed_file_makes_a_new_one(photo_tree, tmp_path, monkeypatch):
    paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(photo_tree) for f in fs)[:4]
    spec, cache = StoreSpec("train", 24, 27), str(tmp_path / "cache")
    first = LazyStore("cub200_training", paths, spec, torch.device("cpu"), decode_device=None, threads=1, pin=False,
                      cache_dir=cache).get()
    assert len([n for n in os.listdir(cache) if n.endswith(".npy")]) == 1

    def no_decoding(path):
        raise AssertionError("decoded although the disk cache holds these images")

    monkeypatch.setattr(image_store, "decode_pil", no_decoding)
    again = LazyStore("cub200_training", paths, spec, torch.device("cpu"), decode_device=None, threads=1, pin=False,
                      cache_dir=cache)
    assert torch.equal(again.get().images, first.images) and "loaded from the disk cache" in again.report
    assert torch.equal(again.get().original_sizes, first.original_sizes)
    os.utime(paths[0], ns=(0, 0))  # a changed file: another key, decoded again
    with pytest.raises(AssertionError, match="decoded although"):
        LazyStore("cub200_training", paths, spec, torch.device("cpu"), decode_device=None, threads=1, pin=False,
                  cache_dir=cache).get()


def test_store_training_batches_follow_the_sampler_and_replay_from_the_generator_state(photo_tree, tmp_path):
    opt = make_opt(*FLAGS, "--data_cache", "ram", "--data_cache_dir", "none", "--augmentation", "adv")
    splits = datasets.select("cub200", opt, photo_tree)
    loader = loading.build_loaders(opt, splits, torch.device("cpu"))["training"]
    sampler_state, generator_state = loader.batch_sampler.state_dict(), loader.generator.get_state()
    batches = list(loader)
    assert len(batches) == len(loader) == 2  # 4 training classes x 2 images, batches of 4
    for labels, images, indices in batches:
        assert images.shape == (4, 3, 24, 24) and images.dtype == torch.float32
        assert torch.equal(labels, torch.as_tensor(splits["training"].labels)[indices])
    loader.batch_sampler.load_state_dict(sampler_state)
    loader.generator.set_state(generator_state)
    for (_, images, indices), (_, again, again_indices) in zip(batches, loader):
        assert torch.equal(indices, again_indices) and torch.equal(images, again)


def test_data_cache_choice(photo_tree, monkeypatch):
    from utilities.errors import UsageError

    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)

    def mode(*flags, device=cpu, dataset="cub200"):
        opt = make_opt(*FLAGS, *flags, "--dataset", dataset)
        splits = datasets.select(dataset, opt, photo_tree)
        evaluated = loading.evaluation.evaluated_sets(splits, include_train=False)
        return loading.store_mode(opt, splits, evaluated, device)

    monkeypatch.setattr(loading, "available_ram_bytes", lambda: 1 << 40)
    assert mode() == "off" and mode("--data_cache", "ram") == "ram"  # a CPU run keeps the streaming path
    with pytest.raises(UsageError, match="--data_cache device needs a CUDA device"):
        mode("--data_cache", "device")
    # 8 training images at <= 54 x 54 and 8 test crops of 24 x 24: at most 83,808 bytes
    assert mode("--data_cache_gb", str(90_000 / 2**30), device=cuda) == "device"
    assert mode("--data_cache_gb", str(80_000 / 2**30), device=cuda) == "ram"
    with pytest.warns(UserWarning, match="over the .* budget .--data_cache_gb.; keeping them in RAM"):
        assert mode("--data_cache", "device", "--data_cache_gb", str(80_000 / 2**30), device=cuda) == "ram"
    monkeypatch.setattr(loading, "available_ram_bytes", lambda: 100_000)
    assert mode("--data_cache_gb", str(80_000 / 2**30), device=cuda) == "off"
    with pytest.warns(UserWarning, match="glyphs images are an in-memory array already"):
        assert mode("--data_cache", "ram", dataset="glyphs") == "off"


@pytest.mark.parametrize("train", [False, True])
def test_streamed_uint8_batches_finished_on_the_device_equal_the_whole_transform(photo_tree, train):
    opt = make_opt(*FLAGS, "--augmentation", "adv")
    dataset = datasets.select("cub200", opt, photo_tree)["training" if train else "testing"]
    view, finish = loading.uint8_view(dataset)
    torch.manual_seed(4)
    whole = torch.stack([dataset[i][1] for i in range(6)])
    torch.manual_seed(4)
    parts = torch.stack([view[i][1] for i in range(6)])
    assert parts.dtype == torch.uint8 and torch.equal(finish(parts), whole)


def test_glyph_batches_finished_on_the_device_equal_the_whole_transform():
    opt = make_opt("--dataset", "glyphs", "--arch", "slimresnet18_normalize", "--not_pretrained")
    dataset = datasets.select("glyphs", opt, "")["training"]
    view, finish = loading.uint8_view(dataset)
    torch.manual_seed(0)
    whole = torch.stack([dataset[i][1] for i in range(8)])
    torch.manual_seed(0)
    assert torch.equal(finish(torch.stack([view[i][1] for i in range(8)])), whole)


def test_a_seeded_batch_gets_the_same_crops_whoever_makes_it(photo_tree):
    opt = make_opt(*FLAGS)
    dataset = datasets.select("cub200", opt, photo_tree)["training"]
    items = loading.SeededItems(loading.uint8_view(dataset)[0])
    first = items.__getitems__((123, [0, 5, 7]))
    torch.rand(10)  # another worker's history
    again = items.__getitems__((123, [0, 5, 7]))
    other = items.__getitems__((124, [0, 5, 7]))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(first, other))


def test_persistent_seeded_workers_replay_an_epoch_from_the_saved_generator(photo_tree):
    # The lean streaming loader of CUDA runs, here on the CPU: workers persist across epochs, so only the
    # per-batch seeds (drawn from the loader's generator, saved in the `last` checkpoint) decide the crops.
    opt = make_opt(*FLAGS, "--kernels", "2")
    splits = datasets.select("cub200", opt, photo_tree)

    def training_loader():
        return loading.streaming_loaders(opt, splits, {}, torch.device("cpu"), lean=True)["training"]

    loader = training_loader()
    first = list(loader)
    saved = loader.batch_sampler.state_dict(), loader.generator.get_state()
    second = list(loader)
    resumed = training_loader()  # new workers, as in a resumed run
    resumed.batch_sampler.load_state_dict(saved[0])
    resumed.generator.set_state(saved[1])
    replay = list(resumed)
    assert len(second) == len(replay) == 2 and not torch.equal(first[0][1], second[0][1])
    for (labels, images, indices), (labels_again, images_again, indices_again) in zip(second, replay):
        assert torch.equal(indices, indices_again) and torch.equal(labels, labels_again)
        assert torch.equal(images, images_again)
