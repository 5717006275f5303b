"""Real-layout loaders on tiny format-exact fixtures built here, and their error messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dejavu.toolkit.data import (
    ADE20K,
    ADE20K_CLASSES,
    DATASET_NAMES,
    CamVid,
    Cityscapes,
    FolderDataset,
    NYUDRefineNet,
    NYUDv2,
    ProceduralScenes,
    convert_refinenet_to_nyud_mt,
    create_dataset,
    dataset_class,
)
from dejavu.toolkit.data.cityscapes import label_ids_to_train_ids
from dejavu.toolkit.data.io import read_image, read_label
from dejavu.toolkit.data.nyud import decode_refinenet_normals, encode_refinenet_normals

H, W = 6, 8
RNG = np.random.default_rng(0)


def _rgb(path: Path, h: int = H, w: int = W) -> np.ndarray:
    arr = RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return arr


def _gray(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _raw_image(ds, i: int) -> np.ndarray:
    return (ds.load(i)["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


# --------------------------------------------------------------------------- CamVid


@pytest.fixture
def data_camvid(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path / "CamVid"
    labels = {}
    lines = []
    for i, name in enumerate(["a.png", "b.png"]):
        _rgb(root / "train" / name)
        lab = RNG.integers(0, 12, (H, W), dtype=np.uint8)
        lab[0, 0], lab[0, 1] = 11, i  # a void pixel in each
        _gray(root / "trainannot" / name, lab)
        labels[name] = lab
        lines.append(f"/SegNet/CamVid/train/{name} /SegNet/CamVid/trainannot/{name}")
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    return root, labels


def test_camvid_reads_split_file_and_maps_void(data_camvid) -> None:
    root, labels = data_camvid
    ds = CamVid(root, "train")
    assert len(ds) == 2 and ds.num_classes == 11 and ds.tasks == ("seg",)
    s = ds.load(1)
    expected = labels["b.png"].astype(np.int64)
    expected[expected == 11] = 255
    np.testing.assert_array_equal(s["seg"].numpy(), expected)
    assert s["name"] == "b"
    np.testing.assert_array_equal(_raw_image(ds, 0), read_image(root / "train" / "a.png"))
    assert ds.class_names[0] == "Sky" and ds.class_names[-1] == "Bicyclist"


def test_camvid_missing_root_and_split_file(tmp_path: Path, data_camvid) -> None:
    with pytest.raises(FileNotFoundError, match=r"nowhere.*expected layout"):
        CamVid(tmp_path / "nowhere", "train")
    root, _ = data_camvid
    with pytest.raises(FileNotFoundError, match=r"val\.txt.*expected layout"):
        CamVid(root, "val")
    (root / "trainannot" / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"trainannot/b\.png.*train\.txt:2"):
        CamVid(root, "train")


def test_camvid_corrupt_image_names_the_file(data_camvid) -> None:
    root, _ = data_camvid
    path = root / "train" / "a.png"
    path.write_bytes(path.read_bytes()[:60])  # truncated PNG
    ds = CamVid(root, "train")
    with pytest.raises(ValueError, match=r"a\.png: corrupt or truncated"):
        ds[0]
    path.write_text("not an image")
    with pytest.raises(ValueError, match=r"a\.png: not a readable image"):
        ds[0]


def test_camvid_label_out_of_range(data_camvid) -> None:
    root, _ = data_camvid
    bad = np.zeros((H, W), np.uint8)
    bad[2, 3], bad[1, 1] = 12, 40
    _gray(root / "trainannot" / "a.png", bad)
    with pytest.raises(ValueError, match=r"a\.png: label values 12, 40 .* 0\.\.11 \(or 255"):
        CamVid(root, "train")[0]


def test_camvid_size_mismatch(data_camvid) -> None:
    root, _ = data_camvid
    _gray(root / "trainannot" / "a.png", np.zeros((H + 1, W), np.uint8))
    with pytest.raises(ValueError, match=r"a\.png is 7x8 .* is 6x8"):
        CamVid(root, "train")[0]


# --------------------------------------------------------------------------- Cityscapes


@pytest.fixture
def data_cityscapes(tmp_path: Path) -> Path:
    root = tmp_path / "cityscapes"
    ids = np.array([[7, 8, 26, 33], [0, 4, 23, 24], [255, 11, 21, 28]], np.uint8)  # 3 x 4
    train = np.array([[0, 1, 13, 18], [255, 255, 10, 11], [255, 2, 8, 15]], np.uint8)
    inst = np.array([[7, 8, 26001, 33000], [0, 4, 23, 24005], [0, 11, 21, 28000]], np.uint16)
    for city, stem in (("aachen", "aachen_000000_000019"), ("bonn", "bonn_000001_000019")):
        _rgb(root / "leftImg8bit" / "train" / city / f"{stem}_leftImg8bit.png", 3, 4)
        gt = root / "gtFine" / "train" / city
        _gray(gt / f"{stem}_gtFine_labelIds.png", ids)
        _gray(gt / f"{stem}_gtFine_labelTrainIds.png", train)
        Image.fromarray(inst).save(gt / f"{stem}_gtFine_instanceIds.png")
    return root


def test_cityscapes_label_id_table() -> None:
    # Values from cityscapesScripts' labels.py, written out by hand.
    ids = np.array([7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33])
    np.testing.assert_array_equal(label_ids_to_train_ids(ids), np.arange(19))
    ignored = np.array([0, 1, 2, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18, 29, 30, -1])
    assert (label_ids_to_train_ids(ignored) == 255).all()


def test_cityscapes_train_ids_and_label_ids_agree(data_cityscapes) -> None:
    auto = Cityscapes(data_cityscapes, "train")
    from_ids = Cityscapes(data_cityscapes, "train", label_source="label_ids")
    assert len(auto) == 2 and auto.num_classes == 19
    assert auto.items[0][1].name.endswith("_labelTrainIds.png")
    assert from_ids.items[0][1].name.endswith("_labelIds.png")
    for i in range(2):
        assert torch.equal(auto.load(i)["seg"], from_ids.load(i)["seg"])
    assert auto.load(0)["name"] == "aachen_000000_000019"
    # Without labelTrainIds files, "auto" falls back to labelIds.
    for p in data_cityscapes.rglob("*_labelTrainIds.png"):
        p.unlink()
    fallback = Cityscapes(data_cityscapes, "train")
    assert torch.equal(fallback.load(1)["seg"], from_ids.load(1)["seg"])
    with pytest.raises(FileNotFoundError, match="labelTrainIds"):
        Cityscapes(data_cityscapes, "train", label_source="train_ids")


def test_cityscapes_instances(data_cityscapes) -> None:
    ds = Cityscapes(data_cityscapes, "train", with_instance=True)
    assert ds.tasks == ("seg", "instance")
    inst = ds.load(0)["instance"]
    expected = torch.tensor([[0, 0, 26001, 33000], [0, 0, 0, 24005], [0, 0, 0, 28000]])
    assert torch.equal(inst, expected)


def test_cityscapes_missing_split(data_cityscapes) -> None:
    with pytest.raises(FileNotFoundError, match=r"leftImg8bit/val.*expected layout"):
        Cityscapes(data_cityscapes, "val")


# --------------------------------------------------------------------------- ADE20K


@pytest.fixture
def data_ade(tmp_path: Path) -> Path:
    root = tmp_path / "ADEChallengeData2016"
    _rgb(root / "images" / "validation" / "ADE_val_00000001.jpg")
    lab = np.zeros((H, W), np.uint8)
    lab[0, :4] = [0, 1, 2, 150]
    _gray(root / "annotations" / "validation" / "ADE_val_00000001.png", lab)
    rows = ["Idx,Ratio,Train,Val,Stuff,Name"]
    rows += [
        f"{i + 1},0.1,1,1,0,{n.replace(' ', ';')};synonym" for i, n in enumerate(ADE20K_CLASSES)
    ]
    (root / "objectInfo150.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def test_ade20k_reduce_zero_label(data_ade) -> None:
    for root in (data_ade, data_ade / "ADEChallengeData2016"):  # both roots work
        ds = ADE20K(root, "val")  # alias of "validation"
        assert ds.split == "validation" and ds.num_classes == 150
        seg = ds.load(0)["seg"]
        assert seg[0, :4].tolist() == [255, 0, 1, 149]
        assert (seg[1:] == 255).all()
        assert ds.synonyms is not None and ds.synonyms[0] == "wall;synonym"


def test_ade20k_rejects_other_label_sets_and_values(data_ade) -> None:
    root = data_ade / "ADEChallengeData2016"
    lab = np.zeros((H, W), np.uint8)
    lab[3, 3] = 151
    _gray(root / "annotations" / "validation" / "ADE_val_00000001.png", lab)
    with pytest.raises(ValueError, match=r"label values 151 .* 0\.\.150"):
        ADE20K(data_ade, "validation")[0]
    csv = root / "objectInfo150.csv"
    csv.write_text(csv.read_text().replace("2,0.1,1,1,0,building", "2,0.1,1,1,0,castle"))
    with pytest.raises(ValueError, match="differs from the 150 ADE20K"):
        ADE20K(data_ade, "validation")
    with pytest.raises(FileNotFoundError, match="images/training"):
        ADE20K(data_ade, "training")


# --------------------------------------------------------------------------- NYUD


def _unit(h: int, w: int) -> np.ndarray:
    n = RNG.normal(size=(h, w, 3))
    return (n / np.linalg.norm(n, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture
def data_refinenet(tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "refinenet"
    truth = {}
    for sid, with_normals in (("000433", True), ("000464", False)):
        _rgb(root / f"{sid}.png")
        seg = RNG.integers(0, 40, (H, W), dtype=np.uint8)
        seg[0, 0] = 255
        _gray(root / f"segm_gt_{sid}.png", seg)
        raw_depth = RNG.integers(2500, 50000, (H, W)).astype(np.uint16)
        raw_depth[1, 1] = 0
        Image.fromarray(raw_depth).save(root / f"depth_gt_{sid}.png")
        normals = None
        if with_normals:
            normals = _unit(H, W)
            normals[2, 2] = 0
            Image.fromarray(encode_refinenet_normals(normals)).save(root / f"norm_gt_{sid}.png")
        truth[sid] = (seg, raw_depth, normals)
    return root, truth


def test_refinenet_normal_encoding_round_trip() -> None:
    n = _unit(4, 5)
    n[0, 0] = 0
    rgb = encode_refinenet_normals(n)
    assert rgb[0, 0].tolist() == [127, 127, 127]
    # x = R/127.5 - 1, y = G/127.5 - 1, z = 1 - B/127.5, worked out for one pixel:
    assert rgb[1, 1].tolist() == [
        round((n[1, 1, 0] + 1) * 127.5),
        round((n[1, 1, 1] + 1) * 127.5),
        round((1 - n[1, 1, 2]) * 127.5),
    ]
    back = decode_refinenet_normals(rgb)
    assert (back[0, 0] == 0).all()
    cos = (back * n).sum(-1)[n.any(-1)]
    assert cos.min() > np.cos(np.deg2rad(1.0))  # 8-bit quantisation: under a degree


def test_refinenet_loader(data_refinenet) -> None:
    root, truth = data_refinenet
    ds = NYUDRefineNet(root)
    assert ds.ids == ["000433", "000464"] and ds.num_classes == 40
    s = ds.load(0)
    seg, raw_depth, normals = truth["000433"]
    np.testing.assert_array_equal(s["seg"].numpy(), seg)
    np.testing.assert_allclose(s["depth"][0].numpy(), raw_depth / 5000.0, rtol=1e-6)
    assert s["depth"][0, 1, 1] == 0
    n = s["normals"].permute(1, 2, 0).numpy()
    assert (n[2, 2] == 0).all()
    valid = normals.any(-1)
    np.testing.assert_allclose(np.linalg.norm(n[valid], axis=-1), 1.0, atol=1e-5)
    assert ((n * normals).sum(-1)[valid]).min() > np.cos(np.deg2rad(1.0))
    # No norm_gt file: all-zero (invalid) normals, same keys.
    s2 = ds.load(1)
    assert set(s2) == set(s) and (s2["normals"] == 0).all()
    depth_only = NYUDRefineNet(root, tasks=["depth"])
    assert set(depth_only.load(0)) == {"image", "depth", "name"}


def test_refinenet_split_file_and_errors(data_refinenet, tmp_path: Path) -> None:
    root, _ = data_refinenet
    (root / "val.txt").write_text("000464\n")
    assert NYUDRefineNet(root, "val").ids == ["000464"]
    with pytest.raises(FileNotFoundError, match=r"train\.txt"):
        NYUDRefineNet(root, "train")
    (root / "depth_gt_000464.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"depth_gt_000464\.png"):
        NYUDRefineNet(root)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="segm_gt_"):
        NYUDRefineNet(empty)


def test_convert_refinenet_to_nyud_mt_round_trip(data_refinenet, tmp_path: Path) -> None:
    root, truth = data_refinenet
    out = convert_refinenet_to_nyud_mt(root, tmp_path / "NYUD_MT", "val")
    seg_file = np.array(Image.open(out / "segmentation" / "000433.png"))
    # NYUD_MT convention: 0 = unlabelled, classes shifted by one.
    expected = truth["000433"][0].astype(np.int64) + 1
    expected[truth["000433"][0] == 255] = 0
    np.testing.assert_array_equal(seg_file, expected)
    mt = NYUDv2(out, "val")
    rn = NYUDRefineNet(root)
    assert mt.tasks == ("seg", "depth", "normals") and len(mt) == 2
    for i in range(2):
        a, b = mt.load(i), rn.load(i)
        assert a["name"] == b["name"]
        for key in ("image", "seg", "depth"):
            assert torch.equal(a[key], b[key]), key
        torch.testing.assert_close(a["normals"], b["normals"])


@pytest.fixture
def data_nyud_mt(tmp_path: Path) -> Path:
    root = tmp_path / "NYUD_MT"
    for sid in ("0", "1"):
        _rgb(root / "images" / f"{sid}.jpg")
        _gray(root / "segmentation" / f"{sid}.png", RNG.integers(0, 41, (H, W), dtype=np.uint8))
        depth = RNG.uniform(0.5, 9.0, (H, W)).astype(np.float32)
        depth[0, 0] = np.nan
        (root / "depth").mkdir(exist_ok=True)
        np.save(root / "depth" / f"{sid}.npy", depth)
        (root / "normals").mkdir(exist_ok=True)
        normals = _unit(H, W)
        normals[0, 1] = 0
        np.save(root / "normals" / f"{sid}.npy", normals)
    (root / "gt_sets").mkdir()
    (root / "gt_sets" / "train.txt").write_text("0\n1\n")
    return root


def test_nyud_mt_conventions(data_nyud_mt) -> None:
    ds = NYUDv2(data_nyud_mt, "train")
    s = ds.load(1)
    raw = read_label(data_nyud_mt / "segmentation" / "1.png").astype(np.int64)
    np.testing.assert_array_equal(s["seg"].numpy(), np.where(raw == 0, 255, raw - 1))
    depth = np.load(data_nyud_mt / "depth" / "1.npy")
    assert s["depth"][0, 0, 0] == 0  # nan -> invalid
    np.testing.assert_array_equal(s["depth"][0].numpy().ravel()[1:], depth.ravel()[1:])
    assert (s["normals"][:, 0, 1] == 0).all()
    torch.testing.assert_close(
        s["normals"], torch.from_numpy(np.load(data_nyud_mt / "normals" / "1.npy")).permute(2, 0, 1)
    )
    assert set(NYUDv2(data_nyud_mt, "train", tasks=["seg"]).load(0)) == {"image", "seg", "name"}


def test_nyud_mt_png_targets_and_errors(data_nyud_mt) -> None:
    root = data_nyud_mt
    (root / "depth" / "0.npy").unlink()
    Image.fromarray(np.full((H, W), 2500, np.uint16)).save(root / "depth" / "0.png")
    (root / "normals" / "0.npy").unlink()
    Image.fromarray(np.full((H, W, 3), [255, 128, 128], np.uint8)).save(root / "normals" / "0.png")
    s = NYUDv2(root, "train", depth_png_scale=1000.0).load(0)
    torch.testing.assert_close(s["depth"], torch.full((1, H, W), 2.5))
    assert torch.allclose(s["normals"][0], torch.ones(H, W), atol=1e-3)  # 2 * 255 / 255 - 1
    with pytest.raises(FileNotFoundError, match=r"gt_sets/val\.txt"):
        NYUDv2(root, "val")
    np.save(root / "normals" / "1.npy", np.zeros((H, W, 2), np.float32))
    with pytest.raises(ValueError, match=r"1\.npy: expected H x W x 3"):
        NYUDv2(root, "train").load(1)
    (root / "images" / "1.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"images/1\.jpg"):
        NYUDv2(root, "train")


# --------------------------------------------------------------------------- Folder


@pytest.fixture
def data_folder(tmp_path: Path) -> Path:
    root = tmp_path / "mine"
    (root / "classes.txt").parent.mkdir(parents=True)
    (root / "classes.txt").write_text("background\nroad\ncar\n")
    for stem in ("x1", "x2", "x3"):
        _rgb(root / "images" / f"{stem}.jpg")
        lab = RNG.integers(0, 3, (H, W), dtype=np.uint8)
        lab[0, 0] = 255
        _gray(root / "labels" / f"{stem}.png", lab)
    (root / "splits").mkdir()
    (root / "splits" / "val.txt").write_text("x3\n")
    return root


def test_folder_dataset(data_folder) -> None:
    ds = FolderDataset(data_folder)
    assert len(ds) == 3 and ds.class_names == ["background", "road", "car"]
    assert FolderDataset(data_folder, "val").items[0][0].name == "x3.jpg"
    s = ds.load(0)
    np.testing.assert_array_equal(s["seg"].numpy(), read_label(data_folder / "labels" / "x1.png"))
    custom = FolderDataset(data_folder, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    torch.testing.assert_close(custom[0]["image"], custom.load(0)["image"])


def test_folder_dataset_errors(data_folder) -> None:
    lab = np.full((H, W), 3, np.uint8)
    _gray(data_folder / "labels" / "x2.png", lab)
    with pytest.raises(ValueError, match=r"x2\.png: label values 3 .* 0\.\.2"):
        FolderDataset(data_folder)[1]
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(data_folder / "labels" / "x2.png")
    with pytest.raises(ValueError, match=r"x2\.png: label maps must be single-channel"):
        FolderDataset(data_folder)[1]
    (data_folder / "splits" / "bad.txt").write_text("x9\n")
    with pytest.raises(FileNotFoundError, match="x9"):
        FolderDataset(data_folder, "bad")
    (data_folder / "labels" / "x1.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"labels/x1\.png"):
        FolderDataset(data_folder)
    (data_folder / "classes.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"classes\.txt.*expected layout"):
        FolderDataset(data_folder)


# --------------------------------------------------------------------------- factory


def test_factory_names_and_dispatch(tmp_path: Path, data_folder, data_camvid) -> None:
    assert {"scenes", "camvid", "cityscapes", "ade20k", "nyudv2", "folder"} <= set(DATASET_NAMES)
    ds = create_dataset("scenes", tmp_path / "cache", "val", num_images=1, size=(16, 16))
    assert isinstance(ds, ProceduralScenes) and ds.split == "val"
    assert isinstance(create_dataset("folder", data_folder, None), FolderDataset)
    assert isinstance(create_dataset("camvid", data_camvid[0], "train"), CamVid)
    assert dataset_class("nyudv2") is NYUDv2
    with pytest.raises(ValueError, match="unknown dataset name 'voc'"):
        create_dataset("voc", tmp_path)
    with pytest.raises(FileNotFoundError, match="needs root"):
        create_dataset("camvid", None)
    with pytest.raises(ValueError, match="needs a split"):
        create_dataset("camvid", data_camvid[0], None)
