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


def percent_formatter(axis) -> "object":
    """Percentages with as many decimals as the tick spacing needs, so no two ticks read the same
    ("31% 32% 32%" from a fixed 0 decimals): the formatter looks at the ticks it labels."""
    import math

    from matplotlib.ticker import FuncFormatter

    def f(x, _pos):
        locs = [v for v in axis.get_majorticklocs()]
        step = min((abs(b - a) for a, b in zip(locs, locs[1:]) if b != a), default=1.0)
        decimals = max(0, min(4, -math.floor(math.log10(step * 100) + 1e-9))) if step > 0 else 0
        text = f"{100 * x:.{decimals}f}%"
        return text.replace("-", "\u2212") if x < 0 else text

    return FuncFormatter(f)


def drawn_png(fig, title: str) -> bytes:
    """The PNG of a figure just drawn (``fig.canvas.draw()``, as ``layout_problems`` does), without drawing it
    again: what ``savefig`` writes at the figure's own resolution (drawing is most of a report's time)."""
    import io

    import matplotlib.image as mimage

    buf = io.BytesIO()
    mimage.imsave(buf, fig.canvas.buffer_rgba(), format="png", origin="upper", dpi=fig.dpi,
                  metadata={"Software": None, "Title": title})
    return buf.getvalue()


def layout_problems(fig) -> list[str]:
    """What a reader could not read in ``fig``: the same tick label twice on one axis, texts that overlap,
    text cut off at the figure's edge. Empty for a sound chart (tests render every report and check)."""
    from matplotlib.text import Text

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    problems: list[str] = []
    tick_labels, in_view = set(), []
    for i, ax in enumerate(fig.axes):
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            lo, hi = sorted(axis.get_view_interval())
            pad = 1e-9 * (hi - lo)
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                tick_labels.update((id(tick.label1), id(tick.label2)))
            shown = []
            for tick in axis.get_major_ticks():
                if lo - pad <= tick.get_loc() <= hi + pad:
                    for label in (tick.label1, tick.label2):
                        if label.get_visible() and label.get_text().strip():
                            in_view.append(label)
                            if label is tick.label1:
                                shown.append(label.get_text())
            seen = {s for s in shown if shown.count(s) > 1}
            if seen:
                problems.append(f"axes {i}: {name} tick labels repeat: {sorted(seen)}")
    texts = [t for t in fig.findobj(Text) if id(t) not in tick_labels and t.get_visible() and t.get_text().strip()]
    texts += in_view
    boxes = []
    for t in texts:
        try:
            bb = t.get_window_extent(renderer)
        except RuntimeError:
            continue
        if bb.width > 0 and bb.height > 0:
            boxes.append((t, bb))
    W, H = fig.bbox.width, fig.bbox.height
    for t, bb in boxes:
        if bb.x0 < -1 or bb.y0 < -1 or bb.x1 > W + 1 or bb.y1 > H + 1:
            problems.append(f"text cut off at the edge: {t.get_text()!r}")
    for a in range(len(boxes)):
        ta, ba = boxes[a]
        for b in range(a + 1, len(boxes)):
            tb, bb = boxes[b]
            w = min(ba.x1, bb.x1) - max(ba.x0, bb.x0)
            h = min(ba.y1, bb.y1) - max(ba.y0, bb.y0)
            if w > 2 and h > 2:  # more than a hairline: the letters touch
                problems.append(f"texts overlap: {ta.get_text()!r} and {tb.get_text()!r}")
    return problems
