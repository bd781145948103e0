"""The example notebook (examples/chapter.py, percent format) runs top to bottom, and what it
displays renders: the report as a table, the graph and the plots as SVG."""

import pathlib
import runpy

CHAPTER = pathlib.Path(__file__).resolve().parent.parent / "examples" / "chapter.py"


def test_the_chapter_runs_top_to_bottom(gpu):
    ns = runpy.run_path(str(CHAPTER), run_name="__main__")
    assert ns["report"].passed is True and "PASS" in ns["report"]._repr_html_()
    for name in ("graph", "profiles", "curve"):
        svg = ns[name]._repr_svg_()
        assert svg.lstrip().startswith("<svg"), name
    vanish, explode = (row["reach_factor"] for row in ns["sweep"].sweep)
    assert vanish < 1 < explode
    assert ns["truncated"].grad_h_norm[0] == 0 and ns["full"].grad_h_norm[0] > 0
    assert ns["trained"].final_eval["loss"] < ns["trained"].baseline
    assert "<table>" in ns["reference"]._repr_html_() and "<table>" in ns["trained"]._repr_html_()
