"""Names from scenario files appear in reports exactly as written: a `$` is not mathtext in a chart, HTML
special characters are escaped, and bidirectional control characters cannot reorder the page."""

from __future__ import annotations

import yaml
from click.testing import CliRunner
from matplotlib.text import Text

from pbrsim.cli.main import main
from pbrsim.report import charts, stress as stress_page
from pbrsim.report.html_text import BIDI_CONTROLS, visible_bidi

from .conftest import make

RLO, LRI, PDI, RLM = "\u202e", "\u2066", "\u2069", "\u200f"
SEGMENTS = ["$\\frac$ " + RLO + "ydal", "<script>alert(1)</script>" + LRI + "x" + PDI, "_underscored"]
PROVIDER = "$x$ charity" + RLM
LINE = "job $\\frac{1}$ \u061c"
ALL_CONTROLS = "".join(BIDI_CONTROLS)


def _hostile_scenario(tmp_path):
    d = make(**{"months": 8, "referrals": {"rate": 6, "end": 4, "distribution": "poisson"}})
    d["name"] = "names " + ALL_CONTROLS
    d["segments"] = {SEGMENTS[0]: {"share": 0.4}, SEGMENTS[1]: {"share": 0.4}, SEGMENTS[2]: {"share": 0.2}}
    t = d["pathway"]["transitions"]
    d["pathway"]["transitions"] = {SEGMENTS[0]: t["easy"], SEGMENTS[1]: t["hard"], SEGMENTS[2]: t["easy"]}
    d["contract"]["commissioner"] = "council <b>" + RLO
    d["contract"]["payments"][1] |= {"name": LINE, "tariff": 300}
    d["contract"]["payments"][3]["tariff"] = 1200
    d["provider"] |= {"name": PROVIDER, "credit": {"limit": 5000, "monthly_interest": 0.01}}
    path = tmp_path / "hostile.yaml"
    path.write_text(yaml.safe_dump(d, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _spy_on_chart_text(monkeypatch, module) -> tuple[list[Text], list[str]]:
    """Record the text objects, and the legend entries, of every chart the module renders (the real
    rendering still runs)."""
    seen: list[Text] = []
    legends: list[str] = []
    render = module._render

    def recording(fig, *args, **kwargs):
        chart = render(fig, *args, **kwargs)
        seen.extend(fig.findobj(Text))
        for leg in fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]:
            legends.extend(t.get_text() for t in leg.get_texts())
        return chart

    monkeypatch.setattr(module, "_render", recording)
    return seen, legends


def _check_page(html: str):
    assert not any(ch in html for ch in BIDI_CONTROLS), "a raw bidi control character in the page"
    assert "<script>" not in html and "&lt;script&gt;alert(1)" in html
    assert "<b>" not in html
    for ch in BIDI_CONTROLS:
        assert f"[U+{ord(ch):04X}]" in html


def test_run_report_shows_names_literally_in_charts_and_escapes_them_in_html(tmp_path, monkeypatch):
    texts, legends = _spy_on_chart_text(monkeypatch, charts)
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["run", str(_hostile_scenario(tmp_path)), "-n", "3", "--seed", "2", "--report", "--quiet",
                                  "--out", str(out)])
    assert r.exit_code == 0, r.output
    html = (out / "report" / "report.html").read_text(encoding="utf-8")
    _check_page(html)
    # the names are in the page as written (escaped), bidi controls shown by their codes
    for name in SEGMENTS + [PROVIDER]:
        escaped = visible_bidi(name).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        assert escaped in html, name
    # in the charts: drawn as plain text, never parsed as mathtext, exactly the name from the file
    assert texts and not any(t.get_parse_math() for t in texts)
    drawn = "\n".join(t.get_text() for t in texts)
    for name in SEGMENTS + [PROVIDER]:
        assert name in drawn, name
    # every segment has its line in the legend of the cumulative outcomes, a leading `_` included
    for name in SEGMENTS:
        assert any(entry.lstrip("\u200b").startswith(name) for entry in legends), name


def test_stress_report_shows_the_organisation_name_literally(tmp_path, monkeypatch):
    texts, _ = _spy_on_chart_text(monkeypatch, stress_page)
    out = tmp_path / "stress"
    r = CliRunner().invoke(main, ["stress", str(_hostile_scenario(tmp_path)), "-o", PROVIDER, "-n", "4", "--executor", "serial",
                                  "--only", "delay_3,shortfall_25", "--report", "--quiet", "--out", str(out)])
    assert r.exit_code == 0, r.output
    html = (out / "report" / "stress.html").read_text(encoding="utf-8")
    assert not any(ch in html for ch in BIDI_CONTROLS)
    assert visible_bidi(PROVIDER) in html
    assert texts and not any(t.get_parse_math() for t in texts)
    assert any(PROVIDER in t.get_text() for t in texts)
