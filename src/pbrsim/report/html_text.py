"""Text in report pages: every value is HTML-escaped, and bidirectional control characters are shown as
visible codes, so a name from a scenario file cannot reorder the text around it on the page.

Escaping a bidi control as a character reference would not help (the browser decodes it back into the
control), so each one becomes the visible text ``[U+202E]``.
"""

from __future__ import annotations

import re

BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
_VISIBLE = {ord(ch): f"[U+{ord(ch):04X}]" for ch in BIDI_CONTROLS}


def visible_bidi(text: str) -> str:
    """``text`` with every bidi control replaced by its visible code."""
    return text.translate(_VISIBLE)


def _finalize(value):
    """Jinja ``finalize``: applied to every ``{{ … }}`` value before autoescaping."""
    from markupsafe import Markup

    if isinstance(value, Markup):  # already-escaped HTML: the codes added hold no markup characters
        return Markup(visible_bidi(str(value)))
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return visible_bidi(str(value))


_MONEY = re.compile(r"[\u2212-]?£\d+(?:,\d{3})*(?:\.\d+)?[km]?")  # a money figure as pbrsim writes one


def nowrap_money(text) -> "object":
    """Escaped ``text`` with every money figure ("−£1,234", "£4.2m") kept on one line: a browser may otherwise
    break a line between the minus sign and the pound sign. (A Jinja filter: ``{{ line | nowrap_money }}``.)"""
    from markupsafe import Markup, escape

    safe = str(escape(visible_bidi(str(text))))
    return Markup(_MONEY.sub(lambda m: f'<span style="white-space:nowrap">{m.group(0)}</span>', safe))


def environment(**options):
    """A Jinja environment for report pages: autoescaping on for every template, bidi controls made visible,
    undefined names an error, and the ``nowrap_money`` filter."""
    import jinja2

    env = jinja2.Environment(autoescape=True, finalize=_finalize, undefined=jinja2.StrictUndefined, **options)
    env.filters["nowrap_money"] = nowrap_money
    return env


# A page of one report section on its own (the stress page, the design page): the section's HTML, printable on A4
_STANDALONE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 62rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.45; color: #111; }
table { border-collapse: collapse; font-size: 0.9rem; margin: 1rem 0; }
th, td { border-bottom: 1px solid #ccc; padding: 0.3rem 0.5rem; text-align: right; vertical-align: top; }
th:first-child, td:first-child { text-align: left; }
small { color: #555; }
figure { margin: 1.5rem 0; } img { max-width: 100%; height: auto; }
.headlines { border-left: 4px solid #0b5394; padding: .25rem 1rem; margin: 1rem 0 1.5rem; }
.n { white-space: nowrap; }
@page { size: A4; margin: 15mm 14mm; }
@media print { body { max-width: none; margin: 0; font-size: 10pt; } figure, table, .headlines { break-inside: avoid; } }
</style></head><body>
{{ body }}
<p><small>Made by pbrsim {{ version }} from {{ source }}.</small></p>
</body></html>
"""


def standalone_page(title: str, body: str, source: str) -> str:
    """A whole HTML page holding ``body`` (HTML already escaped by its own template), with ``title`` and a footer
    naming the pbrsim version and the file the results came from."""
    from markupsafe import Markup

    from .. import __version__

    return environment().from_string(_STANDALONE).render(title=title, body=Markup(body), source=source, version=__version__)
