"""Overlapping text in plotly figures, measured on what the browser drew.

``OVERLAP_JS`` collects every text element plotly drew in each ``.js-plotly-plot`` under a
root element (titles, subplot titles and other annotations, axis titles, tick labels,
legend entries, bar and marker labels, colour-bar labels, Sankey node labels) as the
rectangle its glyphs occupy on screen: the SVG ``getBBox()`` of the element mapped through
its ``getScreenCTM()``, so a rotated tick label is its rotated rectangle, not the larger
axis-aligned box around it. Two texts overlap when those quadrilaterals, each shrunk by
``SLACK`` pixels on every side (a line box holds some empty space above and below the
glyphs), intersect (separating-axis test); a text is cut off when its quadrilateral leaves
the figure's SVG. Returns one description per overlapping pair or cut-off text.

Used by the browser tests on every dashboard page and on every report figure.
"""

from __future__ import annotations

from typing import Any

#: pixels taken off each side of a text's box before comparing (line-box padding)
SLACK = 1.5

OVERLAP_JS = r"""
var root = arguments[0] ? document.querySelector(arguments[0]) : document;
var slack = arguments[1];
var SELECTORS = ['text[class*="title"]', '.annotation-text', '.xtick text', '.ytick text', '.legendtext', '.bartext', '.textpoint text', '.cbtitle text',
                 '.cbaxis text', '.node-label', '.legendtitletext'];
function corners(el) {
    var b = el.getBBox(), m = el.getScreenCTM();
    if (!m || b.width <= 2 * slack || b.height <= 2 * slack) return null;
    var x0 = b.x + slack, y0 = b.y + slack, x1 = b.x + b.width - slack, y1 = b.y + b.height - slack;
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]].map(function (p) {
        return [m.a * p[0] + m.c * p[1] + m.e, m.b * p[0] + m.d * p[1] + m.f];
    });
}
function separated(p, q) {
    var polys = [p, q];
    for (var k = 0; k < 2; k++) {
        var poly = polys[k];
        for (var i = 0; i < 4; i++) {
            var a = poly[i], b = poly[(i + 1) % 4];
            var nx = b[1] - a[1], ny = a[0] - b[0];
            var pmin = Infinity, pmax = -Infinity, qmin = Infinity, qmax = -Infinity;
            p.forEach(function (v) { var d = v[0] * nx + v[1] * ny; pmin = Math.min(pmin, d); pmax = Math.max(pmax, d); });
            q.forEach(function (v) { var d = v[0] * nx + v[1] * ny; qmin = Math.min(qmin, d); qmax = Math.max(qmax, d); });
            if (pmax <= qmin || qmax <= pmin) return true;
        }
    }
    return false;
}
function visible(el) {
    for (var e = el; e && e.nodeType === 1; e = e.parentNode) {
        var s = window.getComputedStyle(e);
        if (s.display === 'none' || s.visibility === 'hidden' || s.opacity === '0') return false;
    }
    return true;
}
var found = [];
var plots = root ? root.querySelectorAll('.js-plotly-plot') : [];
Array.prototype.forEach.call(plots, function (gd, g) {
    var seen = new Set(), texts = [];
    SELECTORS.forEach(function (sel) {
        Array.prototype.forEach.call(gd.querySelectorAll(sel), function (el) {
            if (seen.has(el) || el.tagName.toLowerCase() !== 'text') return;
            seen.add(el);
            var label = (el.textContent || '').trim();
            if (!label || !visible(el)) return;
            var box = corners(el);
            if (box) texts.push({label: label, box: box});
        });
    });
    var where = (gd.closest('[id]') || gd).id || ('figure ' + g);
    var title = gd._fullLayout && gd._fullLayout.title && gd._fullLayout.title.text || '';
    var svg = gd.querySelector('.main-svg');
    var frame = svg ? svg.getBoundingClientRect() : null;
    texts.forEach(function (t) {
        if (!frame) return;
        var out = t.box.some(function (v) {
            return v[0] < frame.left - 1 || v[0] > frame.right + 1 || v[1] < frame.top - 1 || v[1] > frame.bottom + 1;
        });
        if (out) found.push(where + ' (' + title.replace(/<[^>]+>/g, ' ').slice(0, 60) + '): "' +
                            t.label.slice(0, 50) + '" runs out of the figure');
    });
    for (var i = 0; i < texts.length; i++) {
        for (var j = i + 1; j < texts.length; j++) {
            if (!separated(texts[i].box, texts[j].box)) {
                found.push(where + ' (' + title.replace(/<[^>]+>/g, ' ').slice(0, 60) + '): "' +
                           texts[i].label.slice(0, 50) + '" overlaps "' + texts[j].label.slice(0, 50) + '"');
            }
        }
    }
});
return found;
"""


def overlapping_text(driver: Any, root: str | None = None) -> list[str]:
    """Every pair of overlapping texts in the plotly figures under ``root`` (a CSS
    selector; None: the whole page), as ``'where (title): "a" overlaps "b"'``."""
    return list(driver.execute_script(OVERLAP_JS, root, SLACK))
