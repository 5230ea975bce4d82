"""pfa.visualize on the event VGG: any of its PFAs, event-frame inputs, colour bars, one scale per compared row."""

import pytest
import torch
from PIL import Image

from pfa.models.vgg import SpikingVGG
from pfa.visualize import MAX_SPATIAL, attention_figure, find_pfa, save_attention_figures


@pytest.fixture(scope="module")
def vgg():
    torch.manual_seed(0)
    return SpikingVGG(10, 4, 2, input_pool=48, attention="pfa", rank=12, width=0.0625)


def frames() -> torch.Tensor:
    x = torch.zeros(4, 2, 64, 64)
    x[:, :, 20:30, 10:50] = 3.0
    return x


def test_event_frames_through_the_input_and_a_deeper_pfa(vgg, tmp_path):
    for index in (0, 2):
        paths = save_attention_figures(vgg, [(frames(), 1), (frames() * 2, 3)], 5, tmp_path / str(index),
                                       class_names=tuple("abcdefghij"), index=index)
        assert [p.name for p in paths] == ["test00000.png", "test00001.png"]
        with Image.open(paths[0]) as image:
            assert image.size == (2100, 480)  # 2 + min(R, MAX_SPATIAL) = 10 columns of 2.1 in, at 100 dpi
    with pytest.raises(ValueError, match="has 5 PFA modules; index 7"):
        find_pfa(vgg, 7)


def test_panels_colour_bars_and_shared_scales(vgg):
    pfa = find_pfa(vgg)
    captured = {}
    hook = pfa.register_forward_pre_hook(lambda module, args: captured.update(x=args[0]))
    vgg.eval()
    vgg(frames().unsqueeze(0))
    hook.remove()
    figure = attention_figure(pfa, captured["x"], frames(), "input: b")
    top, bottom = figure.subfigs
    panels = [ax for ax in top.axes if ax.images]
    assert len(panels) == 2 + 4 and len(top.axes) == len(panels) + 3  # input, T x C, the shared maps: 3 bars
    maps = [ax.images[0] for ax in panels[2:]]
    assert len({m.get_clim() for m in maps}) == 1  # the T maps of A share one scale
    spatial = [ax.images[0] for ax in bottom.axes if ax.images][2:]
    assert len(spatial) == MAX_SPATIAL and len({m.get_clim() for m in spatial}) == 1
    assert "first 8 of 12" in bottom.axes[2].get_title()
