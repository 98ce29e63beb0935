"""The clip rule for depth-layer passes (core/layers.py)."""

import numpy as np
import pytest

from blender_zdepth.core import layers
from blender_zdepth.core.errors import UsageError


def _bars_scene():
    """Bars at 1.2 m in front of a subject at 3 m before a wall at 20 m, sky on top."""
    d = np.full((120, 160), 20.0)
    d[30:90, 50:110] = 3.0
    d[:, ::12] = 1.2
    d[:6] = np.inf
    return d


def test_clusters_are_found_near_to_far():
    clusters = layers.depth_clusters(_bars_scene())
    assert [(round(a, 3), round(b, 3)) for a, b, _ in clusters] == [(1.2, 1.2), (3.0, 3.0),
                                                                    (20.0, 20.0)]
    assert sum(s for _, _, s in clusters) == pytest.approx(1.0)


def test_clips_go_in_the_gaps_behind_the_near_clusters():
    d = _bars_scene()
    one = layers.clip_distances(d, 2, focus_distance=3.0)
    assert len(one) == 1 and 1.2 < one[0] < 3.0          # behind the bars, before the subject
    two = layers.clip_distances(d, 3, focus_distance=3.0)
    assert two[0] == one[0] and 3.0 < two[1] < 20.0      # then behind the subject
    # the clip sits at the geometric middle of the gap
    assert one[0] == pytest.approx((1.2 * 3.0) ** 0.5)


def test_focus_limits_the_candidates():
    d = _bars_scene()
    # focused on the bars: the subject at 3 m is behind the focus, only the bars are peeled;
    # the second distance is a fill between the first clip and the focus range
    clips = layers.clip_distances(d, 3, focus_distance=1.2)
    assert 1.2 < clips[0] < 3.0 and clips[1] > clips[0]


def test_one_layer_and_fills_and_ranges():
    assert layers.clip_distances(_bars_scene(), 1) == []
    ramp = np.tile(np.geomspace(1, 50, 200)[:, None], (1, 8))   # a ground plane: one cluster
    clips = layers.clip_distances(ramp, 4, focus_distance=5.0, clip_start=0.1, clip_end=100)
    assert len(clips) == 3 and all(b > a for a, b in zip(clips, clips[1:]))
    assert all(0.1 < c < 100 for c in clips)
    sky = np.full((4, 4), np.inf)
    assert len(layers.clip_distances(sky, 3, focus_distance=2.0)) == 2
    near = layers.clip_distances(_bars_scene(), 3, focus_distance=3.0, clip_end=10.0)
    assert all(c < 10.0 for c in near)


@pytest.mark.parametrize("n", [0, 17, 2.5, True, -1])
def test_out_of_range_layers_are_usage_errors(n):
    with pytest.raises(UsageError, match="depth layers"):
        layers.clip_distances(_bars_scene(), n)


def test_bad_clip_range_is_a_usage_error():
    with pytest.raises(UsageError, match="clip range"):
        layers.clip_distances(_bars_scene(), 2, clip_start=5.0, clip_end=1.0)


def test_a_ground_plane_is_not_peeled_whole():
    # a ground plane from 1 m to 300 m (one long cluster), a far wall at 900 m; focus 5 m: the
    # clip goes in front of the focus (a fill), not behind the whole ground
    d = np.tile(np.geomspace(1, 300, 200)[:, None], (1, 8))
    d[:20] = 900.0
    clips = layers.clip_distances(d, 2, focus_distance=5.0, clip_end=5000.0)
    assert len(clips) == 1 and 1.0 < clips[0] < 5.0
