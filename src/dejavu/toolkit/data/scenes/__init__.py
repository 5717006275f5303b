"""Procedural indoor scenes: a dataset shipped as code, with exact dense labels.

Three modules: :mod:`~dejavu.toolkit.data.scenes.render` (the renderer),
:mod:`~dejavu.toolkit.data.scenes.cache` (rendering a split, the ``.npz``
cache) and :mod:`~dejavu.toolkit.data.scenes.dataset` (:class:`ProceduralScenes`).

Each image is a ray-cast room (floor, four walls, ceiling) holding a few
boxes, spheres and cylinders, seen by a pinhole camera at a random pose
inside the room. Every pixel's semantic class, instance id, depth and
surface normal come from the same ray hit as its colour, so the labels are
exact and the image edges (colour and shading changes between surfaces) lie
on the label edges. It needs no download, which makes it the default data
for tests, examples and quick experiments with all three NYUD-style tasks.

Scene content (all lengths in metres, angles in degrees):

- room: width and depth U(4, 8), height U(2.5, 3.5); world y points up.
- 3 to 7 objects resting on the floor (a sphere floats with probability 0.3):
  boxes (half sizes U(0.2, 0.6), random yaw), spheres (radius U(0.2, 0.5)),
  vertical cylinders (radius U(0.15, 0.4), height U(0.4, 1.6)); most are
  placed inside the camera's field of view, footprints do not overlap.
- camera: position at least 0.5 from the walls, height U(1, 2), outside every
  object; yaw towards the room centre +- U(-60, 60) (so views look across the
  room rather than at a nearby wall), pitch U(-25, 20) (negative looks down), roll
  U(-5, 5); horizontal field of view U(60, 80), square pixels, principal
  point at the image centre.
- appearance: a random colour per surface (the four walls share one),
  modulated by a solid texture (plain, stripes, checker or smooth noise);
  Lambertian shading from a point light under the ceiling with hard shadows
  cast by the objects, plus a hemispherical ambient term; gamma 2.2 and a
  little sensor noise (sigma 0.8 / 255), quantised to uint8.

Labels:

- ``seg``: 0 floor, 1 wall, 2 ceiling, 3 box, 4 sphere, 5 cylinder
  (:data:`CLASS_NAMES`); every pixel has a class (no 255).
- ``instance``: objects are numbered 1..N in placement order; floor, walls
  and ceiling are 0 ("stuff", no instance). For panoptic use the objects'
  classes are the things (:data:`THING_CLASSES`, ``ProceduralScenes.categories``);
  every object pixel has its id (no crowd regions). An object hidden in part
  may show as several pieces under one id.
- ``depth``: z-depth along the optical axis in metres (not the ray length);
  positive everywhere because the room is closed.
- ``normals``: unit vectors in the camera frame of OpenCV: x right, y down,
  z forward (into the scene). Visible surfaces face the camera, so
  ``dot(normal, ray) < 0``; the floor's normal has a negative y component
  (it points up). A horizontal flip negates x
  (:func:`~dejavu.toolkit.data.transforms.hflip_sample`).

Determinism: image ``i`` of a split is rendered from its own
``numpy.random.Generator`` seeded with :func:`scene_seed` (``seed + i`` for
train, ``seed + 1_000_000 + i`` for val), so any index can be rendered alone
or in parallel and train and val never share a scene.

Caching: :class:`ProceduralScenes` renders the whole split once and stores
it as a compressed ``.npz`` keyed by (generator version, split, number of
images, size, seed), written atomically (temporary file, then
``os.replace``). Normals are stored as float16 and depth as float32; the
arrays in memory are the stored ones, so a fresh render and a cache hit give
identical samples.
"""

from __future__ import annotations

from dejavu.toolkit.data.scenes.cache import default_cache_dir, render_scenes
from dejavu.toolkit.data.scenes.dataset import ProceduralScenes
from dejavu.toolkit.data.scenes.render import (
    CLASS_NAMES,
    GENERATOR_VERSION,
    THING_CLASSES,
    VAL_SEED_OFFSET,
    RenderedScene,
    render_scene,
    scene_seed,
)

__all__ = [
    "CLASS_NAMES",
    "GENERATOR_VERSION",
    "THING_CLASSES",
    "VAL_SEED_OFFSET",
    "ProceduralScenes",
    "RenderedScene",
    "default_cache_dir",
    "render_scene",
    "render_scenes",
    "scene_seed",
]
