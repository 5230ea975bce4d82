"""Attention pictures of the event VGG: any PFA, event-frame inputs, colour bars, one scale per compared row; how
inputs and labels are drawn."""

import pytest
import torch
from PIL import Image

from pfa.attention.pictures import (
    MAX_SPATIAL,
    attention_figure,
    find_pfa,
    input_picture,
    label_name,
    save_attention_figures,
)
from pfa.attention.projected_full import PFA
from pfa.models.vgg import SpikingVGG


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


def test_inputs_are_drawn_as_event_counts_colour_or_grey():
    events = torch.zeros(3, 2, 4, 5)
    events[0, 0, 1, 2], events[2, 1, 1, 2], events[1, 1, 3, 4] = 2.0, 1.0, 1.0
    picture, label = input_picture(events)
    assert picture.shape == (4, 5) and picture[1, 2] == 3 and picture.sum() == 4
    assert label == "events per pixel (3 frames, 2 channels)"
    rgb = torch.linspace(-2, 2, 3 * 4 * 5).reshape(3, 4, 5)
    picture, label = input_picture(rgb)
    assert picture.shape == (4, 5, 3) and picture.min() == 0 and picture.max() == 1
    assert picture[0, 1, 2] == pytest.approx((rgb[2, 0, 1] + 2).item() / 4)
    picture, label = input_picture(torch.full((1, 4, 5), -0.5))
    assert picture.shape == (4, 5) and (picture == -0.5).all() and label == "pixel value"


def test_labels_by_name_index_or_not_at_all():
    names = ("cat", "dog")
    assert [label_name(1, names), label_name(torch.tensor(0), names), label_name(7, names)] == ["dog", "cat", "7"]
    assert label_name(3, None) == "3" and label_name(torch.zeros(40, dtype=torch.long), names) is None  # CelebA


def test_many_steps_wrap_into_rows(tmp_path):
    torch.manual_seed(0)
    pfa = PFA(T=16, C=2, rank=2)
    spikes = (torch.rand(16, 1, 2, 8, 8) < 0.3).float()
    figure = attention_figure(pfa, spikes, torch.rand(1, 8, 8), "input")
    top, _ = figure.subfigs
    maps = [ax for ax in top.axes if ax.images][2:]
    assert len(maps) == 16 and len({ax.get_subplotspec().rowspan.start for ax in maps}) == 2  # 2 rows of 8
    figure.savefig(tmp_path / "wrapped.png", dpi=100)
    with Image.open(tmp_path / "wrapped.png") as image:
        assert image.size == (2100, 720)  # 2 + 8 columns of 2.1 in; 2 rows of steps and 1 of factors, 2.4 in each
