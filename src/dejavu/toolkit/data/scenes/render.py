"""The procedural-scene renderer: one ray-cast room per seed, with exact dense labels.

See :mod:`dejavu.toolkit.data.scenes` for what a scene holds and how it is labelled.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dejavu._validation import check_choice

__all__ = [
    "CLASS_NAMES",
    "DEFAULT_NUM_IMAGES",
    "GENERATOR_VERSION",
    "THING_CLASSES",
    "VAL_SEED_OFFSET",
    "RenderedScene",
    "check_size",
    "render_scene",
    "scene_seed",
]

GENERATOR_VERSION = "scenes-v1"
CLASS_NAMES = ("floor", "wall", "ceiling", "box", "sphere", "cylinder")
#: The objects are things (one instance id each); floor, walls and ceiling are stuff.
THING_CLASSES = ("box", "sphere", "cylinder")
FLOOR, WALL, CEILING, BOX, SPHERE, CYLINDER = range(6)
VAL_SEED_OFFSET = 1_000_000
DEFAULT_NUM_IMAGES = {"train": 1000, "val": 200}
_EPS = 1e-6


@dataclass(frozen=True)
class RenderedScene:
    """One rendered view (numpy arrays, ``H x W`` layout).

    Attributes:
        image: ``H x W x 3`` uint8 RGB.
        seg: ``H x W`` uint8 class index (:data:`CLASS_NAMES`).
        instance: ``H x W`` uint8 object id, 0 for floor, walls and ceiling.
        depth: ``H x W`` float32 z-depth in metres.
        normals: ``H x W x 3`` float32 unit normals, camera frame (x right, y down, z forward).
        intrinsics: ``3 x 3`` float32 pinhole matrix ``K`` (pixel centres at ``i + 0.5``).
    """

    image: np.ndarray
    seg: np.ndarray
    instance: np.ndarray
    depth: np.ndarray
    normals: np.ndarray
    intrinsics: np.ndarray


def scene_seed(split: str, seed: int, index: int) -> int:
    """The seed of image ``index`` of ``split``: ``seed + index`` (train) or
    ``seed + 1_000_000 + index`` (val).

    Raises:
        ValueError: for an unknown split or an index outside ``[0, 1_000_000)``
            (which would make train and val overlap).

    Example:
        >>> scene_seed("val", 3, 2)
        1000005
    """
    check_choice(split, "split", ("train", "val"))
    if not 0 <= index < VAL_SEED_OFFSET:
        raise ValueError(f"index must be in [0, {VAL_SEED_OFFSET}), got {index}")
    return seed + index + (VAL_SEED_OFFSET if split == "val" else 0)


# --------------------------------------------------------------------------- geometry


def _rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    # Positive angles turn the forward axis (z) towards +y (up): looking up.
    return np.array([[1.0, 0.0, 0.0], [0.0, c, s], [0.0, -s, c]])


def _rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _safe(d: np.ndarray) -> np.ndarray:
    """Replace exact zeros so that slab divisions give huge values instead of nan."""
    return np.where(np.abs(d) < 1e-12, 1e-12, d)


def _hit_room(o: np.ndarray, d: np.ndarray, room: np.ndarray) -> tuple[np.ndarray, ...]:
    """Exit point of rays from inside the box ``[0, room]``: (t, surface class, normal)."""
    ds = _safe(d)
    t_axes = np.where(ds > 0, (room - o) / ds, -o / ds)
    axis = np.argmin(t_axes, axis=1)
    rows = np.arange(len(d))
    t = t_axes[rows, axis]
    sign = np.sign(ds[rows, axis])
    normal = np.zeros_like(d)
    normal[rows, axis] = -sign  # inward
    cls = np.full(len(d), WALL, np.uint8)
    cls[(axis == 1) & (sign < 0)] = FLOOR
    cls[(axis == 1) & (sign > 0)] = CEILING
    return t, cls, normal


def _hit_sphere(o: np.ndarray, d: np.ndarray, c: np.ndarray, r: float) -> tuple[np.ndarray, ...]:
    oc = o - c
    a = np.einsum("ij,ij->i", d, d)
    b = np.einsum("ij,ij->i", d, np.broadcast_to(oc, d.shape))
    cc = np.einsum("ij,ij->i", *(np.broadcast_to(oc, d.shape),) * 2) - r * r
    disc = b * b - a * cc
    ok = (disc >= 0) & (cc > 0)
    t = np.where(ok, (-b - np.sqrt(np.maximum(disc, 0))) / a, np.inf)
    t = np.where(t > _EPS, t, np.inf)
    p = o + t[:, None] * d
    normal = (p - c) / r
    return t, normal


def _hit_box(
    o: np.ndarray, d: np.ndarray, c: np.ndarray, half: np.ndarray, rot: np.ndarray
) -> tuple[np.ndarray, ...]:
    # Work in the box frame: world = rot @ local + c.
    ol = (o - c) @ rot
    dl = _safe(d @ rot)
    t1 = (-half - ol) / dl
    t2 = (half - ol) / dl
    tmin = np.minimum(t1, t2)
    near = tmin.max(axis=1)
    far = np.maximum(t1, t2).min(axis=1)
    t = np.where((near <= far) & (near > _EPS), near, np.inf)
    axis = tmin.argmax(axis=1)
    rows = np.arange(len(d))
    nl = np.zeros_like(d)
    nl[rows, axis] = -np.sign(dl[rows, axis])
    return t, nl @ rot.T


def _hit_cylinder(
    o: np.ndarray, d: np.ndarray, c: np.ndarray, r: float, height: float
) -> tuple[np.ndarray, ...]:
    """Vertical solid cylinder with its base centre at ``c`` (y = c[1])."""
    y0, y1 = c[1], c[1] + height
    oc = np.broadcast_to(o - c, d.shape)
    a = d[:, 0] ** 2 + d[:, 2] ** 2
    b = oc[:, 0] * d[:, 0] + oc[:, 2] * d[:, 2]
    cc = oc[:, 0] ** 2 + oc[:, 2] ** 2 - r * r
    disc = b * b - a * cc
    ok = (disc >= 0) & (cc > 0) & (a > 1e-12)
    t_side = np.where(ok, (-b - np.sqrt(np.maximum(disc, 0))) / np.maximum(a, 1e-12), np.inf)
    y_side = oc[:, 1] + c[1] + t_side * d[:, 1]
    t_side = np.where((t_side > _EPS) & (y_side >= y0) & (y_side <= y1), t_side, np.inf)

    dy = _safe(d[:, 1])
    oy = oc[:, 1] + c[1]
    t_cap = np.where(dy < 0, (y1 - oy) / dy, (y0 - oy) / dy)
    px = oc[:, 0] + t_cap * d[:, 0]
    pz = oc[:, 2] + t_cap * d[:, 2]
    cap_ok = (t_cap > _EPS) & (px * px + pz * pz <= r * r)
    t_cap = np.where(cap_ok, t_cap, np.inf)

    side = t_side <= t_cap
    t = np.minimum(t_side, t_cap)
    p = oc + np.where(np.isfinite(t), t, 0.0)[:, None] * d
    normal = np.zeros_like(d)
    normal[:, 0] = np.where(side, p[:, 0] / r, 0.0)
    normal[:, 2] = np.where(side, p[:, 2] / r, 0.0)
    normal[:, 1] = np.where(side, 0.0, np.where(dy < 0, 1.0, -1.0))
    return t, normal


@dataclass(frozen=True)
class _Object:
    kind: int  # BOX, SPHERE or CYLINDER
    centre: np.ndarray  # box/sphere: centre; cylinder: base centre
    size: np.ndarray  # box: half sizes; sphere: (r,); cylinder: (r, height)
    rot: np.ndarray  # box orientation (3 x 3), identity otherwise

    @property
    def footprint(self) -> float:
        """Radius of a vertical cylinder around the object (placement checks)."""
        if self.kind == BOX:
            return float(np.hypot(self.size[0], self.size[2]))
        return float(self.size[0])

    def hit(self, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, ...]:
        if self.kind == BOX:
            return _hit_box(o, d, self.centre, self.size, self.rot)
        if self.kind == SPHERE:
            return _hit_sphere(o, d, self.centre, float(self.size[0]))
        return _hit_cylinder(o, d, self.centre, float(self.size[0]), float(self.size[1]))


# --------------------------------------------------------------------------- appearance


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v))


@dataclass(frozen=True)
class _Material:
    colour: np.ndarray  # linear RGB albedo
    kind: str  # plain | stripes | checker | noise
    amplitude: float
    waves: np.ndarray  # 3 x 3 wave vectors (rad / m)
    phases: np.ndarray  # 3

    def albedo(self, p: np.ndarray) -> np.ndarray:
        if self.kind == "plain":
            return np.broadcast_to(self.colour, p.shape)
        s = p @ self.waves.T + self.phases  # N x 3
        if self.kind == "stripes":
            pattern = np.sign(np.sin(s[:, 0]))
        elif self.kind == "checker":
            pattern = np.sign(np.sin(s[:, 0])) * np.sign(np.sin(s[:, 1]))
        else:
            pattern = np.sin(s).mean(axis=1) * 1.5
        return np.clip(self.colour * (1.0 + self.amplitude * pattern[:, None]), 0.0, 1.0)


def _random_direction(rng: np.random.Generator, horizontal: bool = False) -> np.ndarray:
    v = rng.normal(size=3)
    if horizontal:
        v[1] = 0.0
    return v / max(float(np.linalg.norm(v)), 1e-9)


def _material(
    rng: np.random.Generator,
    hue: float,
    sat: tuple[float, float],
    val: tuple[float, float],
    kinds: Sequence[str],
    tiles: bool = False,
) -> _Material:
    srgb = _hsv_to_rgb(hue, rng.uniform(*sat), rng.uniform(*val))
    kind = str(rng.choice(kinds))
    period = rng.uniform(0.15, 0.6) if kind != "noise" else rng.uniform(0.3, 1.2)
    k = 2 * np.pi / period
    if tiles:
        # Floor tiles: two orthogonal horizontal wave vectors.
        a = _random_direction(rng, horizontal=True)
        b = np.array([-a[2], 0.0, a[0]])
        waves = np.stack([a, b, _random_direction(rng)]) * k
    else:
        waves = np.stack([_random_direction(rng) for _ in range(3)]) * k
    return _Material(
        colour=srgb**2.2,
        kind=kind,
        amplitude=float(rng.uniform(0.1, 0.3)),
        waves=waves,
        phases=rng.uniform(0, 2 * np.pi, size=3),
    )


# --------------------------------------------------------------------------- scene sampling


def _place_objects(
    rng: np.random.Generator, room: np.ndarray, cam: np.ndarray, yaw: float, half_fov: float
) -> list[_Object]:
    objects: list[_Object] = []
    for _ in range(int(rng.integers(3, 8))):
        kind = int(rng.integers(BOX, CYLINDER + 1))
        if kind == BOX:
            size = rng.uniform(0.2, 0.6, size=3)
            rot = _rot_y(rng.uniform(0, 2 * np.pi))
            y = size[1]
        elif kind == SPHERE:
            size = np.array([rng.uniform(0.2, 0.5)])
            rot = np.eye(3)
            # Floating spheres stay below 2.1 m so the light (>= 2.2 m) is never inside one.
            y = size[0] if rng.random() > 0.3 else rng.uniform(size[0], 1.6)
        else:
            size = np.array([rng.uniform(0.15, 0.4), rng.uniform(0.4, 1.6)])
            rot = np.eye(3)
            y = 0.0
        fp = float(np.hypot(size[0], size[2])) if kind == BOX else float(size[0])
        for _attempt in range(30):
            if rng.random() < 0.75:
                ang = yaw + rng.uniform(-0.8, 0.8) * half_fov
                dist = rng.uniform(1.0, 4.5)
                xz = cam[[0, 2]] + dist * np.array([np.sin(ang), np.cos(ang)])
            else:
                xz = rng.uniform([0.0, 0.0], room[[0, 2]])
            lo, hi = fp + 0.05, room[[0, 2]] - fp - 0.05
            if np.any(hi <= lo):
                break
            xz = np.clip(xz, lo, hi)
            if np.hypot(*(xz - cam[[0, 2]])) < fp + 0.3:
                continue
            gaps = [np.hypot(*(xz - o.centre[[0, 2]])) - o.footprint for o in objects]
            if any(g < fp + 0.05 for g in gaps):
                continue
            centre = np.array([xz[0], y, xz[1]])
            objects.append(_Object(kind, centre, size, rot))
            break
    return objects


def render_scene(seed: int, size: tuple[int, int] = (96, 128)) -> RenderedScene:
    """Render the scene of ``seed`` at ``size = (H, W)``.

    The same seed and size always give the same arrays (numpy's PCG64
    generator, no global state).

    Example:
        >>> s = render_scene(0, (24, 32))
        >>> s.image.shape, s.depth.dtype, bool((s.depth > 0).all())
        ((24, 32, 3), dtype('float32'), True)
    """
    h, w = check_size(size)
    rng = np.random.default_rng(seed)

    room = np.array([rng.uniform(4, 8), rng.uniform(2.5, 3.5), rng.uniform(4, 8)])
    cam = np.array(
        [
            rng.uniform(0.5, room[0] - 0.5),
            rng.uniform(1.0, 2.0),
            rng.uniform(0.5, room[2] - 0.5),
        ]
    )
    # Look across the room (towards its centre, +-60 deg) rather than at a nearby wall.
    to_centre = room[[0, 2]] / 2 - cam[[0, 2]]
    yaw = np.arctan2(to_centre[0], to_centre[1]) + np.deg2rad(rng.uniform(-60, 60))
    pitch = np.deg2rad(rng.uniform(-25, 20))
    roll = np.deg2rad(rng.uniform(-5, 5))
    fov = np.deg2rad(rng.uniform(60, 80))
    f = (w / 2) / np.tan(fov / 2)
    K = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]])
    # Camera-to-world rotation; diag(1, -1, 1) turns OpenCV's y-down into the world's y-up.
    R = _rot_y(yaw) @ _rot_x(pitch) @ _rot_z(roll) @ np.diag([1.0, -1.0, 1.0])

    objects = _place_objects(rng, room, cam, yaw, fov / 2)
    hue0 = rng.random()
    # Floor, walls (a hue well away from the floor's) and a pale ceiling, then one per object.
    all_kinds = ["plain", "checker", "stripes", "noise"]
    materials = [
        _material(rng, hue0, (0.1, 0.6), (0.25, 0.6), all_kinds, tiles=True),
        _material(
            rng,
            hue0 + rng.uniform(0.25, 0.75),
            (0.05, 0.5),
            (0.55, 0.9),
            ["plain", "plain", "stripes", "noise"],
        ),
        _material(rng, rng.random(), (0.0, 0.15), (0.8, 0.95), ["plain", "plain", "noise"]),
    ] + [_material(rng, rng.random(), (0.4, 0.9), (0.3, 0.95), all_kinds) for _ in objects]
    light = np.array(
        [
            rng.uniform(0.5, room[0] - 0.5),
            room[1] - rng.uniform(0.1, 0.3),
            rng.uniform(0.5, room[2] - 0.5),
        ]
    )
    light_power = rng.uniform(0.9, 1.4)
    ambient = rng.uniform(0.12, 0.25)

    # Rays through pixel centres; d has z = 1 in the camera frame, so t is the z-depth.
    u = (np.arange(w) + 0.5 - K[0, 2]) / f
    v = (np.arange(h) + 0.5 - K[1, 2]) / f
    d_cam = np.stack(np.broadcast_arrays(u[None, :], v[:, None], 1.0), axis=-1).reshape(-1, 3)
    d = d_cam @ R.T

    t, cls, normal = _hit_room(cam, d, room)
    inst = np.zeros(len(d), np.uint8)
    surface = np.where(cls == WALL, 1, np.where(cls == CEILING, 2, 0))
    for j, ob in enumerate(objects):
        t_o, n_o = ob.hit(cam, d)
        closer = t_o < t
        t = np.where(closer, t_o, t)
        normal[closer] = n_o[closer]
        cls[closer] = ob.kind
        inst[closer] = j + 1
        surface[closer] = 3 + j
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    p = cam + t[:, None] * d

    albedo = np.empty_like(p)
    for k, mat in enumerate(materials):
        m = surface == k
        if m.any():
            albedo[m] = mat.albedo(p[m])

    to_light = light - p
    dist = np.linalg.norm(to_light, axis=1)
    lambert = np.clip(np.einsum("ij,ij->i", normal, to_light) / dist, 0.0, None)
    lit = lambert > 0
    origin = p[lit] + 1e-4 * normal[lit]
    shadow_dir = light - origin
    shadowed = np.zeros(int(lit.sum()), bool)
    for ob in objects:
        t_s, _ = ob.hit(origin, shadow_dir)
        shadowed |= t_s < 1.0
    direct = np.zeros(len(d))
    direct[lit] = np.where(shadowed, 0.0, lambert[lit] * light_power / (1 + 0.04 * dist[lit] ** 2))
    # Hemispherical ambient (world y up): upward-facing surfaces get more, so that
    # differently oriented surfaces differ even in shadow.
    hemi = ambient * (0.75 + 0.25 * normal[:, 1])
    radiance = albedo * (hemi + direct)[:, None]
    srgb = np.clip(radiance, 0.0, 1.0) ** (1 / 2.2)
    srgb += rng.normal(0.0, 0.8 / 255, size=srgb.shape)
    image = np.clip(np.round(srgb * 255), 0, 255).astype(np.uint8)

    n_cam = normal @ R  # = (R^T n) for row vectors
    return RenderedScene(
        image=image.reshape(h, w, 3),
        seg=cls.reshape(h, w),
        instance=inst.reshape(h, w),
        depth=t.reshape(h, w).astype(np.float32),
        normals=n_cam.reshape(h, w, 3).astype(np.float32),
        intrinsics=K.astype(np.float32),
    )


def check_size(size: Sequence[int]) -> tuple[int, int]:
    if (
        not isinstance(size, Sequence)
        or len(size) != 2
        or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size)
        or min(size) < 8
    ):
        raise ValueError(f"size must be a pair of ints (H, W), each >= 8, got {size!r}")
    return int(size[0]), int(size[1])
