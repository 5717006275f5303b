"""A redaction: keep every other horizontal stripe (random phase per sample)."""

import torch

from dejavu.redaction import Redacted, Redaction, register_redaction


@register_redaction
class StripesRedaction(Redaction):
    name = "stripes"  # dejavu.redaction: {name: stripes, height: 4}
    family = "spatial"  # it returns a keep mask

    def __init__(self, height: int = 4) -> None:
        super().__init__()
        if height < 1:
            raise ValueError(f"height must be >= 1, got {height}")
        self.height = height

    def forward(self, image: torch.Tensor, generator: torch.Generator | None = None) -> Redacted:
        b, _, h, _ = image.shape
        phase = torch.randint(0, 2, (b, 1, 1, 1), generator=generator).to(image.device)
        rows = torch.arange(h, device=image.device).view(1, 1, h, 1) // self.height
        keep = ((rows + phase) % 2).to(image.dtype).expand(b, 1, h, image.shape[-1])
        return Redacted(image * keep, keep)
