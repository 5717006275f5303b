"""Panoptic data: the scenes' instances, COCO panoptic, Cityscapes panoptic, the shared contract.

The contract (``dejavu.toolkit.data``'s docstring): ``seg`` holds train ids
(255 = VOID), ``instance`` 0 = none, an id >= 1 per thing object, 0 on a
thing pixel = crowd; ``categories`` is ``[{"id", "name", "isthing"}]`` in
train-id order. Tests on the real samples skip when ``$DEJAVU_DATA`` (or
``../shared/data``) is absent.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dejavu.metrics import PanopticQuality, panoptic_from_labels, panoptic_from_segments
from dejavu.toolkit.data import (
    COCO_PANOPTIC_CATEGORIES,
    Cityscapes,
    CocoPanoptic,
    DenseDataset,
    ProceduralScenes,
    create_dataset,
    dataset_class,
    pad_collate,
    panoptic_datasets,
    render_scene,
)
from dejavu.toolkit.data.coco_panoptic import rgb_to_segment_ids, train_ids_to_coco_ids
from dejavu.toolkit.data.scenes.cache import save_npz
from dejavu.toolkit.data.scenes.render import GENERATOR_VERSION
from dejavu.toolkit.data.transforms import crop_sample, hflip_sample, resize_sample

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("DEJAVU_DATA", REPO.parent / "shared" / "data"))


def _require(sub: str) -> Path:
    path = DATA / sub
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set DEJAVU_DATA to the shared data folder)")
    return path


def _self_pq(categories: list[dict], seg: torch.Tensor, inst: torch.Tensor) -> dict:
    metric = PanopticQuality(categories)
    x = panoptic_from_labels(seg[None], inst[None])
    metric.update(x, x)
    return metric.compute()


def _check_contract(categories: list[dict], seg: torch.Tensor, inst: torch.Tensor) -> None:
    """The sample-level rules every panoptic dataset must follow."""
    assert seg.dtype == inst.dtype == torch.int64 and seg.shape == inst.shape
    things = torch.tensor([c["isthing"] for c in categories])
    valid = seg != 255
    assert int(seg[valid].max()) < len(categories) and int(seg[valid].min()) >= 0
    on_thing = torch.zeros_like(valid)
    on_thing[valid] = things[seg[valid]]
    assert (inst[~on_thing] == 0).all()  # stuff and VOID carry no instance
    assert int(inst.min()) >= 0 and int(inst.max()) < 2**24
    for i in inst.unique().tolist():
        if i:
            assert seg[inst == i].unique().numel() == 1  # one category per object


# --------------------------------------------------------------------------- contract


def test_categories_of_the_panoptic_datasets() -> None:
    assert panoptic_datasets() == ["cityscapes", "coco_panoptic", "scenes"]
    ds = create_dataset("scenes", None, "val", num_images=1, size=(8, 8), cache=False)
    assert ds.categories == [
        {"id": 0, "name": "floor", "isthing": False},
        {"id": 1, "name": "wall", "isthing": False},
        {"id": 2, "name": "ceiling", "isthing": False},
        {"id": 3, "name": "box", "isthing": True},
        {"id": 4, "name": "sphere", "isthing": True},
        {"id": 5, "name": "cylinder", "isthing": True},
    ]
    # Class-level facts, readable before loading: 8 Cityscapes things (train ids 11..18)
    # and 80 COCO things among 133 (ids 1..90 things, 92..200 stuff).
    assert dataset_class("cityscapes").thing_classes == (
        "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
    )  # fmt: skip
    coco = dataset_class("coco_panoptic")
    assert len(coco.class_names) == 133 and len(coco.thing_classes or ()) == 80
    assert CocoPanoptic.coco_category_ids[0] == 1 and CocoPanoptic.coco_category_ids[-1] == 200
    assert all(t == (i <= 90) for i, _, t in COCO_PANOPTIC_CATEGORIES)


def test_dataset_without_thing_split_says_which_have_one() -> None:
    class Plain(DenseDataset):
        name = "plain"
        class_names = ["a", "b"]  # noqa: RUF012
        tasks = ("seg",)

        def __len__(self) -> int:
            return 0

        def load(self, index: int) -> dict:
            raise IndexError(index)

    with pytest.raises(ValueError, match=r"no thing/stuff split.*coco_panoptic"):
        _ = Plain().categories
    Plain.thing_classes = ("c",)
    with pytest.raises(ValueError, match=r"\['c'\].*not in its class_names"):
        _ = Plain().categories


def test_panoptic_from_labels_checks_its_inputs() -> None:
    seg = torch.tensor([[1, 255]])
    assert panoptic_from_labels(seg, torch.tensor([[4, 0]])).tolist() == [[[1, 255]], [[4, 0]]]
    with pytest.raises(ValueError, match="same shape"):
        panoptic_from_labels(seg, torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        panoptic_from_labels(seg.float(), seg)
    with pytest.raises(ValueError, match=">= 0"):
        panoptic_from_labels(seg, torch.tensor([[-1, 0]]))


# --------------------------------------------------------------------------- scenes

# Label statistics of three scenes, recorded with the renderer as it was before the
# panoptic work (which left it unchanged; its seg/instance/depth/normals arrays were
# compared bitwise then). Counts and sums with a tolerance rather than hashes, so that a
# CPU whose BLAS rounds the ray directions in the last bit still passes.
# (seed, size) -> (pixels per class, pixels per instance id, depth sum, normals sum)
_SCENE_STATS = {
    (0, (24, 32)): (
        [34, 346, 335, 8, 0, 45],
        [715, 19, 8, 13, 13],
        2597.601,
        [-105.291, 251.08, -304.521],
    ),
    (1, (24, 32)): (
        [117, 508, 0, 0, 3, 140],
        [625, 0, 47, 0, 0, 3, 0, 93],
        2544.747,
        [-233.874, -75.411, -478.568],
    ),
    (1000003, (40, 56)): (
        [0, 1503, 586, 0, 0, 151],
        [2089, 0, 0, 99, 52],
        7792.572,
        [-429.27, 394.619, -1122.812],
    ),
}


@pytest.mark.parametrize("key", list(_SCENE_STATS))
def test_scene_labels_did_not_change(key: tuple[int, tuple[int, int]]) -> None:
    classes, instances, depth_sum, normals_sum = _SCENE_STATS[key]
    s = render_scene(*key)
    np.testing.assert_allclose(np.bincount(s.seg.ravel(), minlength=6), classes, atol=2)
    np.testing.assert_allclose(np.bincount(s.instance.ravel()), instances, atol=2)
    assert float(s.depth.astype(np.float64).sum()) == pytest.approx(depth_sum, rel=1e-4)
    np.testing.assert_allclose(
        s.normals.astype(np.float64).sum(axis=(0, 1)), normals_sum, atol=0.05
    )


def test_scene_instances_follow_the_contract(tmp_path: Path) -> None:
    ds = ProceduralScenes(tmp_path, "val", 4, (36, 48), seed=3, tasks=["seg", "instance"])
    assert ds.tasks == ("seg", "instance")
    seen_objects = 0
    for i in range(len(ds)):
        s = ds.load(i)
        seg, inst = s["seg"], s["instance"]
        _check_contract(ds.categories, seg, inst)
        assert (inst[seg <= 2] == 0).all() and (inst[seg >= 3] > 0).all()  # no crowd
        seen_objects += int(inst.unique().numel()) - 1
        pq = _self_pq(ds.categories, seg, inst)
        assert float(pq["pq"]) == pytest.approx(1.0) and float(pq["pq_things"]) == pytest.approx(
            1.0
        )
    assert seen_objects >= 4


def test_scene_instances_survive_flip_crop_resize_and_collate(tmp_path: Path) -> None:
    ds = ProceduralScenes(tmp_path, "train", 2, (36, 48), seed=1, cache=False)
    s = ds.load(0)
    seg, inst = s["seg"].clone(), s["instance"].clone()

    flipped = hflip_sample(s)
    assert torch.equal(flipped["instance"], inst.flip(-1))
    assert torch.equal(flipped["seg"], seg.flip(-1))

    crop = crop_sample(s, 5, 7, 20, 30)
    assert torch.equal(crop["instance"], inst[5:25, 7:37])
    assert torch.equal(crop["seg"], seg[5:25, 7:37])

    # Nearest resampling moves (seg, instance) pairs together: every output pair is an input pair.
    big = resize_sample(s, (50, 70))
    pairs_in = set(zip(seg.flatten().tolist(), inst.flatten().tolist(), strict=True))
    pairs_out = set(
        zip(big["seg"].flatten().tolist(), big["instance"].flatten().tolist(), strict=True)
    )
    assert pairs_out <= pairs_in

    batch = pad_collate([crop, s])
    assert batch["instance"].shape == (2, 36, 48)
    assert (batch["instance"][0, 20:] == 0).all() and (batch["seg"][0, 20:] == 255).all()
    assert (batch["instance"][0, :, 30:] == 0).all() and (batch["seg"][0, :, 30:] == 255).all()
    assert torch.equal(batch["instance"][1], inst)


def test_scene_cache_without_instances_is_rerendered(tmp_path: Path) -> None:
    fresh = ProceduralScenes(tmp_path / "fresh", "train", 2, (16, 24), seed=2, cache=False)
    # A cache written without the instance array, under the current name and metadata.
    meta = {"version": GENERATOR_VERSION, "split": "train", "num_images": 2,
            "size": [16, 24], "seed": 2}  # fmt: skip
    arrays = {k: v for k, v in fresh._arrays.items() if k != "instance"}
    path = tmp_path / f"{GENERATOR_VERSION}_train_n2_16x24_seed2.npz"
    save_npz(path, arrays, meta)
    with pytest.warns(RuntimeWarning, match="regenerating"):
        ds = ProceduralScenes(tmp_path, "train", 2, (16, 24), seed=2)
    assert ds.cache_path == path
    for i in range(2):
        assert torch.equal(ds.load(i)["instance"], fresh.load(i)["instance"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = ProceduralScenes(tmp_path, "train", 2, (16, 24), seed=2)  # the rewritten cache
    assert torch.equal(again.load(1)["instance"], fresh.load(1)["instance"])


# --------------------------------------------------------------------------- COCO panoptic


def _expected_coco(root: Path, ann: dict, categories: list[dict]) -> tuple[np.ndarray, ...]:
    """seg and instance worked out from the json and the PNG with plain numpy."""
    rgb = np.asarray(Image.open(root / "annotations" / "panoptic_val2017" / ann["file_name"]))
    r, g, b = (rgb[..., c].astype(np.int64) for c in range(3))
    ids = r + 256 * g + 65536 * b
    ordered = sorted(categories, key=lambda c: c["id"])
    train_of = {c["id"]: k for k, c in enumerate(ordered)}
    thing = {c["id"]: bool(c["isthing"]) for c in ordered}
    seg = np.full(ids.shape, 255, np.int64)
    inst = np.zeros(ids.shape, np.int64)
    covered = ids == 0
    for s in ann["segments_info"]:
        m = ids == s["id"]
        covered |= m
        seg[m] = train_of[s["category_id"]]
        if thing[s["category_id"]] and not s["iscrowd"]:
            inst[m] = s["id"]
    assert covered.all()  # every PNG id is in the json
    return seg, inst, ids


@pytest.mark.realdata
def test_coco_panoptic_sample_matches_a_hand_decoding() -> None:
    root = _require("samples/coco_panoptic")
    ds = create_dataset("coco_panoptic", root, "val")
    assert isinstance(ds, CocoPanoptic) and len(ds) == 2 and ds.num_classes == 133
    data = json.loads((root / "annotations" / "panoptic_val2017.json").read_text())
    assert ds.coco_category_ids == tuple(sorted(c["id"] for c in data["categories"]))
    by_name = {a["file_name"][:-4]: a for a in data["annotations"]}
    for i in range(len(ds)):
        s = ds.load(i)
        ann = by_name[s["name"]]
        seg, inst, ids = _expected_coco(root, ann, data["categories"])
        np.testing.assert_array_equal(s["seg"].numpy(), seg)
        np.testing.assert_array_equal(s["instance"].numpy(), inst)
        assert s["image"].shape[-2:] == seg.shape
        _check_contract(ds.categories, s["seg"], s["instance"])
        crowd = [x for x in ann["segments_info"] if x["iscrowd"]]
        assert crowd  # both sample images have a crowd segment: instance 0 on a thing
        on_crowd = torch.from_numpy(ids == crowd[0]["id"])
        assert on_crowd.any() and (s["instance"][on_crowd] == 0).all()

        pq = _self_pq(ds.categories, s["seg"], s["instance"])
        for k in ("pq", "sq", "rq", "pq_things", "pq_stuff"):
            assert float(pq[k]) == pytest.approx(1.0), k

        # The same truth in COCO ids (the metric's own converter) scores a shifted
        # prediction exactly as the train-id encoding does.
        coco = panoptic_from_segments(torch.from_numpy(ids), ann["segments_info"])[None]
        ours = panoptic_from_labels(s["seg"], s["instance"])[None]
        assert torch.equal(coco[:, 0], train_ids_to_coco_ids(ours[:, 0], ds.coco_category_ids))
        scores = []
        for truth, cats in ((ours, ds.categories), (coco, data["categories"])):
            m = PanopticQuality(cats)
            m.update(truth.roll(9, dims=-1), truth)
            scores.append(m.compute())
        for k in ("pq", "pq_things", "pq_stuff"):
            assert float(scores[0][k]) == pytest.approx(float(scores[1][k]), abs=1e-12), k
        assert 0.2 < float(scores[0]["pq"]) < 0.99


@pytest.mark.realdata
def test_coco_panoptic_resize_keeps_segment_ids_exact() -> None:
    root = _require("samples/coco_panoptic")
    s = CocoPanoptic(root, "val2017", tasks=["instance"]).load(0)
    assert set(s) == {"image", "instance", "name"}
    assert int(s["instance"].max()) > 2**23  # ids near the float32 limit survive resampling
    small = resize_sample(s, (101, 151))
    assert set(small["instance"].unique().tolist()) <= set(s["instance"].unique().tolist())


def test_train_ids_to_coco_ids() -> None:
    ids = train_ids_to_coco_ids(
        torch.tensor([[0, 79, 80, 132, 255]]), CocoPanoptic.coco_category_ids
    )
    assert ids.tolist() == [[1, 90, 92, 200, 255]]
    with pytest.raises(ValueError, match=r"outside 0..132"):
        train_ids_to_coco_ids(torch.tensor([133]), CocoPanoptic.coco_category_ids)


# A tiny COCO-format dataset written by the tests: two 6 x 8 images.
_PERSON, _CAR, _SKY = 1, 3, 187  # COCO ids: two things and a stuff category


@pytest.fixture
def coco_root(tmp_path: Path) -> Path:
    root = tmp_path / "coco"
    (root / "annotations" / "panoptic_val2017").mkdir(parents=True)
    (root / "val2017").mkdir()
    images, annotations = [], []
    for k in range(2):
        ids = np.zeros((6, 8), np.int64)
        ids[:2] = 300  # sky
        ids[2:, :3] = 70000 + k  # a person (a 3-byte id)
        ids[2:, 3:5] = 5  # a crowd of cars
        ids[2:, 5:7] = 6  # a car; the last column stays VOID
        rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)
        stem = f"{k:012d}"
        Image.fromarray(rgb).save(root / "annotations" / "panoptic_val2017" / f"{stem}.png")
        Image.fromarray(np.full((6, 8, 3), 40 * k, np.uint8)).save(root / "val2017" / f"{stem}.jpg")
        images.append({"id": k, "file_name": f"{stem}.jpg", "height": 6, "width": 8})
        annotations.append({
            "image_id": k,
            "file_name": f"{stem}.png",
            "segments_info": [
                {"id": 300, "category_id": _SKY, "iscrowd": 0},
                {"id": 70000 + k, "category_id": _PERSON, "iscrowd": 0},
                {"id": 5, "category_id": _CAR, "iscrowd": 1},
                {"id": 6, "category_id": _CAR, "iscrowd": 0},
            ],
        })  # fmt: skip
    categories = [
        {"id": i, "name": n, "isthing": int(t), "color": [0, 0, 0]}
        for i, n, t in COCO_PANOPTIC_CATEGORIES
    ]
    _write_json(root, {"images": images, "annotations": annotations, "categories": categories})
    return root


def _write_json(root: Path, data: dict) -> None:
    (root / "annotations" / "panoptic_val2017.json").write_text(json.dumps(data))


def _read_json(root: Path) -> dict:
    return json.loads((root / "annotations" / "panoptic_val2017.json").read_text())


def test_coco_panoptic_tiny_dataset(coco_root: Path) -> None:
    ds = CocoPanoptic(coco_root, "val")
    s = ds.load(1)
    assert s["name"] == "000000000001"
    person, car, sky = (CocoPanoptic.coco_category_ids.index(c) for c in (_PERSON, _CAR, _SKY))
    row = [person] * 3 + [car] * 4 + [255]
    assert s["seg"].tolist() == [[sky] * 8] * 2 + [row] * 4
    assert s["instance"].tolist() == [[0] * 8] * 2 + [[70001] * 3 + [0, 0, 6, 6, 0]] * 4
    assert (person, car, sky) == (0, 2, 119)


def test_coco_panoptic_own_categories(coco_root: Path) -> None:
    data = _read_json(coco_root)
    data["categories"] = [
        {"id": _SKY, "name": "sky", "isthing": 0},
        {"id": _CAR, "name": "car", "isthing": 1},
        {"id": _PERSON, "name": "person", "isthing": 1},
    ]
    _write_json(coco_root, data)
    ds = CocoPanoptic(coco_root, "val")
    assert ds.class_names == ["person", "car", "sky"] and ds.coco_category_ids == (1, 3, 187)
    assert [c["isthing"] for c in ds.categories] == [True, True, False]
    assert ds.load(0)["seg"][0, 0] == 2 and ds.load(0)["seg"][5, 0] == 0
    assert len(CocoPanoptic.class_names) == 133  # the class attribute is untouched


def test_coco_panoptic_missing_files(coco_root: Path) -> None:
    with pytest.raises(ValueError, match=r"split.*train2017"):
        CocoPanoptic(coco_root, "test")
    shutil.rmtree(coco_root / "annotations" / "panoptic_val2017")
    with pytest.raises(FileNotFoundError, match=r"annotations/panoptic_val2017 .*expected layout"):
        CocoPanoptic(coco_root, "val")
    (coco_root / "annotations" / "panoptic_val2017.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"panoptic_val2017\.json"):
        CocoPanoptic(coco_root, "val")


def test_coco_panoptic_missing_png(coco_root: Path) -> None:
    (coco_root / "annotations" / "panoptic_val2017" / "000000000001.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"annotations\[1\].*000000000001\.png"):
        CocoPanoptic(coco_root, "val")


def test_coco_panoptic_png_ids_not_in_json(coco_root: Path) -> None:
    data = _read_json(coco_root)
    del data["annotations"][0]["segments_info"][1]  # the person
    _write_json(coco_root, data)
    ds = CocoPanoptic(coco_root, "val")
    ds.load(1)  # the other image is fine
    with pytest.raises(ValueError, match=r"000000000000\.png: segment ids \[70000\] are not in"):
        ds.load(0)


def test_coco_panoptic_corrupt_or_grey_png(coco_root: Path) -> None:
    png = coco_root / "annotations" / "panoptic_val2017" / "000000000000.png"
    data = png.read_bytes()
    png.write_bytes(data[: data.index(b"IDAT") + 10])  # header intact, pixel data cut short
    ds = CocoPanoptic(coco_root, "val")
    with pytest.raises(ValueError, match=r"000000000000\.png: corrupt or truncated"):
        ds.load(0)
    Image.fromarray(np.zeros((6, 8), np.uint8)).save(png)
    with pytest.raises(ValueError, match=r"8-bit RGB image .*got mode 'L'"):
        ds.load(0)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("categories"), r"missing keys \['categories'\]"),
        (lambda d: d["annotations"][0]["segments_info"][0].update(category_id=999),
         r"annotations\[0\]: segments_info\[0\] has category_id 999"),
        (lambda d: d["annotations"][1]["segments_info"][0].update(id=2**24),
         r"annotations\[1\]: segments_info\[0\] needs an int 'id' in 1..16777215"),
        (lambda d: d["annotations"][0].update(image_id=42), r"image_id 42 is not in 'images'"),
        (lambda d: d["categories"].append(dict(d["categories"][0])),
         r"category ids must be unique, got duplicates \[1\]"),
        (lambda d: d.update(annotations=[]), r"'annotations' is empty"),
    ],
)  # fmt: skip
def test_coco_panoptic_bad_json(coco_root: Path, edit, message: str) -> None:
    data = _read_json(coco_root)
    edit(data)
    _write_json(coco_root, data)
    with pytest.raises(ValueError, match=message):
        CocoPanoptic(coco_root, "val")


def test_coco_panoptic_json_that_is_not_json(coco_root: Path) -> None:
    (coco_root / "annotations" / "panoptic_val2017.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a valid JSON file"):
        CocoPanoptic(coco_root, "val")


def test_rgb_to_segment_ids() -> None:
    rgb = np.array([[[255, 255, 255], [7, 1, 0]]], np.uint8)
    assert rgb_to_segment_ids(rgb).tolist() == [[2**24 - 1, 7 + 256]]
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        rgb_to_segment_ids(np.zeros((2, 2), np.uint8))


# --------------------------------------------------------------------------- Cityscapes


@pytest.mark.realdata
def test_cityscapes_sample_is_panoptic() -> None:
    root = _require("samples/cityscapes")
    ds = Cityscapes(root, "val", with_instance=True)
    s = ds.load(0)
    seg, inst = s["seg"], s["instance"]
    _check_contract(ds.categories, seg, inst)
    assert [c["id"] for c in ds.categories if c["isthing"]] == list(range(11, 19))
    # Each object keeps its Cityscapes id, label_id * 1000 + k, on its own class.
    train_of_label = {24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
    for i in inst.unique().tolist():
        if i:
            assert (seg[inst == i] == train_of_label[i // 1000]).all()
    pq = _self_pq(ds.categories, seg, inst)
    assert float(pq["pq"]) == pytest.approx(1.0)
    assert float(pq["pq_things"]) == pytest.approx(1.0)


def test_cityscapes_groups_are_crowd_and_ignored_objects_have_no_instance(tmp_path: Path) -> None:
    root = tmp_path / "cityscapes"
    stem = "aachen_000000_000019"
    label_ids = np.array([[26, 26, 29, 7], [24, 24, 11, 26]], np.uint8)
    # car 26001, a car group (26 < 1000: crowd), caravan 29001 (ignored), road, persons,
    # a building; and a last pixel that is a car by labelIds but stored as group.
    instance_ids = np.array([[26001, 26, 29001, 7], [24000, 24002, 11, 26]], np.uint16)
    (root / "leftImg8bit" / "train" / "aachen").mkdir(parents=True)
    gt = root / "gtFine" / "train" / "aachen"
    gt.mkdir(parents=True)
    Image.fromarray(np.zeros((2, 4, 3), np.uint8)).save(
        root / "leftImg8bit" / "train" / "aachen" / f"{stem}_leftImg8bit.png"
    )
    Image.fromarray(label_ids).save(gt / f"{stem}_gtFine_labelIds.png")
    Image.fromarray(instance_ids).save(gt / f"{stem}_gtFine_instanceIds.png")
    s = Cityscapes(root, "train", with_instance=True).load(0)
    assert s["seg"].tolist() == [[13, 13, 255, 0], [11, 11, 2, 13]]
    assert s["instance"].tolist() == [[26001, 0, 0, 0], [24000, 24002, 0, 0]]
