"""A dataset: random two-colour images split by a line, with classes and an edge map."""

import torch

from dejavu.toolkit.data import DenseDataset, register_dataset


@register_dataset
class Gradients(DenseDataset):
    name = "gradients"  # data.name: gradients
    needs_root = False  # generated, nothing to read
    class_names = ["dark", "light"]  # noqa: RUF012
    tasks = ("seg", "edges")  # the targets every sample carries

    def __init__(self, root=None, split="train", transform=None, num_images=8, size=(32, 48)):
        super().__init__(transform)
        self.seed = {"train": 0, "val": 1000}[split]
        self.num_images, self.size = num_images, tuple(size)

    def __len__(self) -> int:
        return self.num_images

    def load(self, index: int) -> dict:
        g = torch.Generator().manual_seed(self.seed + index)
        h, w = self.size
        cut = int(torch.randint(4, w - 4, (1,), generator=g))
        seg = (torch.arange(w) >= cut).long().expand(h, w).clone()
        colours = torch.rand(2, 3, generator=g)
        image = colours[seg].permute(2, 0, 1)  # 3 x H x W in [0, 1]
        edges = torch.zeros(1, h, w)
        edges[..., cut - 1 : cut + 1] = 1.0
        return {"image": image, "seg": seg, "edges": edges, "name": f"{index:04d}"}
