"""The naive data path the benchmarks compare against: a torchvision-style Dataset of PIL images with
CPU transforms (random crop, flip, to-tensor, normalise) behind a DataLoader."""
from __future__ import annotations

import torch

from naspoison.data.augment import channel_stats


class PILDataset(torch.utils.data.Dataset):
    def __init__(self, x, y, transform):
        from PIL import Image

        self.images = [Image.fromarray(im.squeeze(-1) if im.shape[-1] == 1 else im) for im in x]
        self.y, self.transform = y, transform

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.transform(self.images[i]), int(self.y[i])


def plain_loader(x, y, stats_from, batch_size: int, padding: int, train: bool, workers: int, device) -> torch.utils.data.DataLoader:
    """Shuffled and augmented for training; in order and plain for testing. Normalised by ``stats_from``'s
    channel statistics, as the product's loop is."""
    from torchvision import transforms as T

    mean, std = channel_stats(stats_from)
    steps = [T.RandomCrop(x.shape[1], padding=padding), T.RandomHorizontalFlip()] if train else []
    tf = T.Compose([*steps, T.ToTensor(), T.Normalize(mean.tolist(), std.tolist())])
    return torch.utils.data.DataLoader(PILDataset(x, y, tf), batch_size=batch_size, shuffle=train, num_workers=workers,
                                       pin_memory=torch.device(device).type == "cuda", persistent_workers=workers > 0)

