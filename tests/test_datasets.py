"""Datasets: procedural shapes, image folders (ADM crop, flips, labels, bad images), latent stores."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dimsum_core.config import build
from dimsum_core.data import latent_store
from dimsum_core.data.image_files import center_crop_arr
from dimsum_core.data.procedural import SHAPE_NAMES
from dimsum_core.errors import DataError

# -- procedural ------------------------------------------------------------------------------------

def test_procedural_is_deterministic_by_seed_and_index():
    a = build("dataset", {"name": "procedural", "resolution": 16, "num_classes": 4, "size": 10, "seed": 1})
    b = build("dataset", {"name": "procedural", "resolution": 16, "num_classes": 4, "size": 10, "seed": 1})
    c = build("dataset", {"name": "procedural", "resolution": 16, "num_classes": 4, "size": 10, "seed": 2})
    x3, y3 = a[3]
    assert torch.equal(x3, b[3][0]) and y3 == b[3][1]
    assert not torch.equal(x3, c[3][0])
    assert not torch.equal(a[3][0], a[4][0])
    assert x3.shape == (3, 16, 16) and x3.dtype == torch.float32
    assert x3.min() >= -1 and x3.max() <= 1


def test_procedural_labels_cover_the_classes_and_shapes_differ_by_class():
    data = build("dataset", {"name": "procedural", "resolution": 32, "num_classes": 3, "size": 300})
    assert (data.channels, data.resolution, data.num_classes, len(data)) == (3, 32, 3, 300)
    assert data.classes == SHAPE_NAMES[:3] == ["circle", "square", "triangle"]
    labels = [data[i][1] for i in range(300)]
    assert all(60 < labels.count(k) < 140 for k in range(3))

    def box_fill(i: int) -> float:
        """Shape area / bounding-box area: pi/4 for a circle, 1 for a square, 1/2 for a triangle."""
        x = data[i][0]
        mask = (x - x[:, 0, 0][:, None, None]).abs().sum(0) > 0.5  # the corner is background
        rows, cols = mask.any(1).nonzero(), mask.any(0).nonzero()
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        return mask.sum().item() / box.item()

    fills = [np.mean([box_fill(i) for i in range(300) if labels[i] == k]) for k in range(3)]
    assert 0.72 < fills[0] < 0.85 and fills[1] > 0.9 and 0.4 < fills[2] < 0.62, fills


def test_procedural_unlabeled_and_any_resolution():
    data = build("dataset", {"name": "procedural", "resolution": 7, "num_classes": 0, "size": 20})
    assert data.num_classes == 0
    assert {data[i][1] for i in range(20)} == {0}
    assert data[0][0].shape == (3, 7, 7)


def test_procedural_bad_options():
    with pytest.raises(DataError, match="there are 8 shapes"):
        build("dataset", {"name": "procedural", "num_classes": 9})
    with pytest.raises(DataError, match="size=0"):
        build("dataset", {"name": "procedural", "size": 0})


# -- image-folder ----------------------------------------------------------------------------------

def _image(path, size, colour=(10, 20, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def test_center_crop_arr_matches_adm_semantics():
    # 100x40 -> short side 40 >= 2*16: BOX-halve to 50x20, then BICUBIC to 40x16, then crop 16x16
    arr = np.zeros((40, 100, 3), dtype=np.uint8)
    arr[:, 42:58] = 255  # a white vertical band in the middle
    out = center_crop_arr(Image.fromarray(arr), 16)
    assert out.size == (16, 16)
    expected = Image.fromarray(arr).resize((50, 20), Image.BOX).resize((40, 16), Image.BICUBIC)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(expected)[:, 12:28])


def test_image_folder_labels_from_subfolders_flips_and_range(tmp_path):
    left_white = np.zeros((8, 8, 3), dtype=np.uint8)
    left_white[:, :4] = 255
    (tmp_path / "b_class").mkdir()
    Image.fromarray(left_white).save(tmp_path / "b_class" / "x.png")
    _image(tmp_path / "a_class" / "y.jpg", (8, 8))
    _image(tmp_path / "a_class" / "deeper" / "z.png", (9, 12))
    data = build("dataset", {"name": "image-folder", "root": str(tmp_path), "resolution": 8})
    assert data.classes == ["a_class", "b_class"] and data.num_classes == 2
    assert len(data) == 6  # 3 images x 2 flip states
    x, y = data[2]
    assert y == 1 and x.shape == (3, 8, 8)
    assert x[:, :, 0].min() == 1.0 and x[:, :, 7].max() == -1.0
    flipped, y_flipped = data[5]
    assert y_flipped == 1 and torch.equal(flipped, x.flip(-1))
    no_flip = build("dataset", {"name": "image-folder", "root": str(tmp_path), "resolution": 8, "hflip": False})
    assert len(no_flip) == 3


def test_image_folder_without_subfolders_is_unlabeled(tmp_path):
    _image(tmp_path / "one.png", (10, 10))
    _image(tmp_path / "two.png", (10, 10))
    data = build("dataset", {"name": "image-folder", "root": str(tmp_path), "resolution": 4, "hflip": False})
    assert data.num_classes == 0 and [data[i][1] for i in range(2)] == [0, 0]


def test_image_folder_bad_images(tmp_path):
    _image(tmp_path / "ok.png", (8, 8))
    (tmp_path / "bad.jpg").write_bytes(b"\x00\x01garbage")
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image\(s\): bad.jpg"):
        data = build("dataset", {"name": "image-folder", "root": str(tmp_path), "resolution": 8})
    assert [p.name for p in data.skipped] == ["bad.jpg"] and len(data.files) == 1
    with pytest.raises(DataError, match="bad.jpg: unreadable image"):
        build("dataset", {"name": "image-folder", "root": str(tmp_path), "on_bad_image": "error"})
    assert (tmp_path / "bad.jpg").read_bytes() == b"\x00\x01garbage"


def test_image_folder_truncated_image_is_replaced_or_an_error(tmp_path):
    _image(tmp_path / "a.png", (8, 8), (200, 0, 0))
    good = tmp_path / "b.png"
    _image(good, (64, 64), (0, 200, 0))
    good.write_bytes(good.read_bytes()[:60])  # header parses, pixels do not
    data = build("dataset", {"name": "image-folder", "root": str(tmp_path), "resolution": 8, "hflip": False})
    with pytest.warns(UserWarning, match="b.png: unreadable image, using the next one"):
        x, _ = data[1]
    assert torch.equal(x, data[0][0])
    strict = build("dataset", {"name": "image-folder", "root": str(tmp_path), "resolution": 8,
                               "on_bad_image": "error"})
    with pytest.raises(DataError, match="b.png: unreadable image"):
        strict[1]


def test_image_folder_missing_and_empty(tmp_path):
    with pytest.raises(DataError, match="no such data folder"):
        build("dataset", {"name": "image-folder", "root": str(tmp_path / "missing")})
    with pytest.raises(DataError, match="no images found"):
        build("dataset", {"name": "image-folder", "root": str(tmp_path)})


# -- latents -------------------------------------------------------------------------------------

def _store(tmp_path, count=3, flips=2, done=None):
    info = latent_store.LatentInfo(vae="vae-dir", scaling_factor=0.5, shape=[4, 2, 2], count=count, flips=flips,
                                   resolution=16, num_classes=2, classes=["a", "b"], source="s")
    rows = latent_store.create_arrays(tmp_path, info, np.array([1, 0, 1][:count]))
    rows[:] = np.arange(rows.size, dtype=np.float32).reshape(rows.shape)
    rows.flush()
    info.done = count if done is None else done
    latent_store.write_info(tmp_path, info)
    return info


def test_latent_dataset_sizes_come_from_the_sidecar(tmp_path):
    _store(tmp_path)
    data = build("dataset", {"name": "latents", "root": str(tmp_path)})
    assert data.is_latent and (data.channels, data.resolution, data.num_classes) == (4, 2, 2)
    assert len(data) == 6 and data.scaling_factor == 0.5
    x, y = data[4]  # row 4 = image 1, flipped
    assert y == 0 and torch.equal(x, torch.arange(64, 80, dtype=torch.float32).view(4, 2, 2))
    assert len(build("dataset", {"name": "latents", "root": str(tmp_path), "hflip": False})) == 3


def test_latent_dataset_refuses_incomplete_or_missing_stores(tmp_path):
    _store(tmp_path, done=1)
    with pytest.raises(DataError, match=r"incomplete \(1 of 3 images encoded\); rerun"):
        build("dataset", {"name": "latents", "root": str(tmp_path)})
    with pytest.raises(DataError, match="no such latent folder.*prepare-latents"):
        build("dataset", {"name": "latents", "root": str(tmp_path / "nope")})
    (tmp_path / "other").mkdir()
    with pytest.raises(DataError, match="not a latent store"):
        build("dataset", {"name": "latents", "root": str(tmp_path / "other")})
