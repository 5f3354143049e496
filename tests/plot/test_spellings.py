"""One spelling per concept in the public API (American: ``color``, ``normalize``, as
plotly and torch spell them); the old spellings work for one release and warn."""

from __future__ import annotations

import pytest

from relabscope import plot
from relabscope.plot.guards import guard_color, guard_colour
from relabscope.plot.training import confusion


def test_old_color_names_still_work_and_say_what_replaces_them() -> None:
    names = ["anger", "happiness"]
    with pytest.warns(DeprecationWarning, match="class_colours is deprecated .* use class_colors"):
        assert plot.class_colours(names) == plot.class_colors(names)
    with pytest.warns(DeprecationWarning, match="use guard_color"):
        assert guard_colour("floor") == guard_color("floor")


def test_normalise_still_works_and_warns(tiny_runs) -> None:
    import relabscope as rs

    with rs.open_run(tiny_runs["scn"]) as run:
        with pytest.warns(DeprecationWarning, match="use normalize="):
            old = confusion(run, normalise=False)
        new = confusion(run, normalize=False)
    assert old.data[0].z.tolist() == new.data[0].z.tolist()
