"""FashionMNIST's batched indexing gives the DataLoader exactly the batches of its per-image indexing."""

import torch
from torch.utils.data import DataLoader, Subset

from pfa.data.fashion_mnist import FashionMNIST


def test_batched_and_per_image_loading_give_equal_batches():
    torch.manual_seed(0)
    data = FashionMNIST(torch.randint(0, 256, (50, 28, 28), dtype=torch.uint8), torch.randint(0, 10, (50,)))
    subset = Subset(data, list(range(3, 50, 2)))  # the engine's --train-samples path
    per_image = [data[i] for i in subset.indices]
    for images, labels in DataLoader(subset, batch_size=8):
        expected = per_image[:len(labels)]
        per_image = per_image[len(labels):]
        assert images.dtype == torch.float32 and images.shape[1:] == (1, 28, 28)
        assert torch.equal(images, torch.stack([image for image, _ in expected]))
        assert labels.tolist() == [label for _, label in expected]
    assert not per_image
    assert data.__getitems__([7, 2])[1][0].max() <= 1.0
