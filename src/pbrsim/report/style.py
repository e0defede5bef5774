"""The look of every pbrsim chart (run, experiment and stress reports): one set of matplotlib settings.

``text.parse_math`` is off so that names from scenario files are drawn as written: a ``$`` in a segment,
organisation or design name is a dollar sign, never the start of mathtext (which could fail to parse).
"""

from __future__ import annotations

RC = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "hatch.linewidth": 0.6,
    "legend.frameon": False,
    "svg.fonttype": "none",
    "text.parse_math": False,
    "text.usetex": False,
}


def apply(plt) -> None:
    """Apply the pbrsim chart style to matplotlib's settings."""
    plt.rcParams.update(RC)


def literal_text(fig) -> None:
    """Draw every text of ``fig`` as written, whatever matplotlib's settings were when it was made."""
    from matplotlib.text import Text

    for text in fig.findobj(Text):
        text.set_parse_math(False)


def legend_label(name: str) -> str:
    """A name as a legend label. matplotlib leaves labels that start with ``_`` out of legends, so such a name
    gets an invisible zero-width space in front and is listed as written."""
    name = str(name)
    return "\u200b" + name if name.startswith("_") else name
