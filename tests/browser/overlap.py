"""Readable text in plotly figures, measured on what the browser drew.

``measure_text`` collects every visible SVG ``<text>`` plotly.js drew in each
``.js-plotly-plot`` under a root element (the hover layer excepted), sorts it into a kind by
the first selector of ``KINDS`` it matches (``"other"`` if none: still checked), and takes
the rectangle its glyphs occupy on screen: the SVG ``getBBox()`` of the element mapped
through its ``getScreenCTM()``, so a rotated tick label is its rotated rectangle, not the
larger axis-aligned box around it. Two texts overlap when those quadrilaterals, each shrunk
by ``SLACK`` pixels on every side (a line box holds some empty space above and below the
glyphs), intersect (separating-axis test); a text is cut off when its quadrilateral leaves
the figure's SVG or a clip path it is drawn through (a subplot's plot area, the legend's
box); and a text is too small when its font is under ``LEGIBLE_PX`` on screen (plotly
shrinks some texts rather than let them overlap; such a text is not compared).

A check that measures nothing would pass, so each figure also says, from what it asks
plotly to draw (``_fullLayout``, ``_fullData``), how many texts of each kind it must yield
at least; fewer is a problem too, so a selector that no longer matches what plotly.js
draws fails instead of passing silently:

==========  ==================================================================================
tick        1 on every axis (x, x2, y3 ...) that is visible and shows tick labels
title       1 for the figure title, if it has one, and 1 for every visible axis with a title
annotation  1 for every visible annotation with text placed on the paper (plotly hides one
            placed on data when it is off the axes' range, so those are not counted)
legend      1 if the legend is shown and a trace is in it
colorbar    1 if a visible trace shows a colour bar
heatmap     1 for every visible heatmap with a texttemplate and a cell with a value
sankey      1 for every visible Sankey diagram with a node label and a link
bar         1 for every visible bar trace showing text (textposition not "none") at a bar with
            a value (plotly writes none at a bar without one)
point       1 for every visible SVG scatter trace whose mode has "text", with text at a point
            with a value
==========  ==================================================================================

Used by the browser tests on every dashboard page and on every report figure; the positive
controls in ``test_overlap_check.py`` show that it fails on figures made to overlap, to be
cut off or shrunk, and on selectors that match nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: pixels taken off each side of a text's box before comparing (line-box padding)
SLACK = 1.5
#: the smallest font size on screen, in pixels, that a text may have (plotly shrinks texts
#: that do not fit: heatmap cell labels in their "auto" size, bar labels wider than the bar)
LEGIBLE_PX = 8

#: kind of text -> CSS selector of the SVG ``<text>`` elements plotly.js (v4) draws for it.
#: A text takes the first kind whose selector it matches, so a colour bar's tick labels are
#: "colorbar" and its title is not "title"; a text matching none is "other".
KINDS: dict[str, str] = {
    # a colour bar's title and tick labels (g.colorbar > g.cbaxis > g.ycb<uid>tick > text)
    "colorbar": ".colorbar text",
    # the legend's title (text.legendtitletext) and entries (text.legendtext)
    "legend": ".legend text",
    # the figure's title (text.gtitle) and axis titles (text.xtitle, text.x2title, text.y3title ...)
    "title": 'text[class*="title"]',
    # annotations, the subplot titles of make_subplots among them
    "annotation": "text.annotation-text",
    # tick labels of every cartesian axis: g.xtick, g.x2tick, g.y3tick ... (g.xtick2: the
    # second row of a multicategory axis), each group holding one <text>
    "tick": 'g[class*="tick"] > text',
    # heatmap cell labels (texttemplate): g.hm > g.heatmap-label > text
    "heatmap": ".heatmap-label > text",
    # Sankey node labels: g.sankey > g.sankey-node-set > g.sankey-node > text.node-label
    "sankey": ".sankey text.node-label",
    # bar labels (text / texttemplate on go.Bar), inside or outside the bar
    "bar": "text.bartext",
    # scatter text labels (mode with "text"; SVG traces only, WebGL draws its own)
    "point": ".textpoint > text",
}
OTHER = "other"

#: kind -> what one text of that kind is called in messages
NOUNS = {"colorbar": "colour-bar texts", "legend": "legend texts", "title": "titles",
         "annotation": "annotations", "tick": "tick labels", "heatmap": "heatmap cell labels",
         "sankey": "Sankey node labels", "bar": "bar labels", "point": "scatter text labels",
         OTHER: "other texts"}

MEASURE_JS = r"""
var root = arguments[0] ? document.querySelector(arguments[0]) : document;
var kinds = arguments[1], slack = arguments[2], other = arguments[3], legible = arguments[4];

function corners(el, m) {
    var b = el.getBBox();
    if (b.width <= 2 * slack || b.height <= 2 * slack) return null;
    var x0 = b.x + slack, y0 = b.y + slack, x1 = b.x + b.width - slack, y1 = b.y + b.height - slack;
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]].map(function (p) {
        return [m.a * p[0] + m.c * p[1] + m.e, m.b * p[0] + m.d * p[1] + m.f];
    });
}
function separated(p, q) {  // separating-axis test of two convex quadrilaterals
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
function clips(el, gd) {  // [what, left, top, right, bottom] on screen of each clip path el is drawn through
    var out = [];
    for (var e = el; e && e !== gd; e = e.parentNode) {
        var ref = /url\(["']?#([^"')]+)/.exec(e.getAttribute('clip-path') || '');
        var path = ref && document.getElementById(ref[1]), rect = path && path.querySelector('rect');
        var m = rect && e.getScreenCTM();  // the clip rectangle is in e's user space
        if (!m) continue;
        var x0 = rect.x.baseVal.value, y0 = rect.y.baseVal.value;
        var x1 = x0 + rect.width.baseVal.value, y1 = y0 + rect.height.baseVal.value;
        var xs = [], ys = [];
        [[x0, y0], [x1, y0], [x1, y1], [x0, y1]].forEach(function (p) {
            xs.push(m.a * p[0] + m.c * p[1] + m.e);
            ys.push(m.b * p[0] + m.d * p[1] + m.f);
        });
        var cls = e.getAttribute('class') || '';
        var what = /^x\d*y\d*$/.test(cls) ? 'the plot area of subplot ' + cls
                 : e.closest('.legend') ? 'the legend box' : 'its clip path #' + ref[1];
        out.push([what, Math.min.apply(null, xs), Math.min.apply(null, ys),
                  Math.max.apply(null, xs), Math.max.apply(null, ys)]);
    }
    return out;
}
function outside(box, left, top, right, bottom) {  // a corner of box beyond the rectangle (1 px grace)
    return box.some(function (v) {
        return v[0] < left - 1 || v[0] > right + 1 || v[1] < top - 1 || v[1] > bottom + 1;
    });
}
function visible(el) {
    for (var e = el; e && e.nodeType === 1; e = e.parentNode) {
        var s = window.getComputedStyle(e);
        if (s.display === 'none' || s.visibility === 'hidden' || s.opacity === '0') return false;
    }
    return true;
}
function kindOf(el) {
    for (var i = 0; i < kinds.length; i++) if (el.matches(kinds[i][1])) return kinds[i][0];
    return other;
}
function hasText(v) { return v !== undefined && v !== null && String(v).trim() !== ''; }
function some(list, test) {  // Array or typed array (plotly decodes base64-packed data into one)
    for (var i = 0; list && i < list.length; i++) if (test(list[i], i)) return true;
    return false;
}
function anyText(v) { return Array.isArray(v) ? v.some(hasText) : hasText(v); }
function present(v) { return v !== undefined && v !== null && v !== '' && !(typeof v === 'number' && isNaN(v)); }
function labelled(t, values) {  // some point of trace t with a value has a text
    return some(values, function (v, i) {
        var text = Array.isArray(t.text) ? t.text[i] : t.text;
        return present(v) && (anyText(t.texttemplate) || hasText(text));
    });
}
function onPaper(ref) { return ref === 'paper' || /domain$/.test(ref || ''); }

// what the figure asks plotly to draw -> the least it must yield of each kind
function minimums(gd) {
    var fl = gd._fullLayout, data = gd._fullData || [], perAxis = [], perKind = {};
    function need(kind, because, axis) {  // one more text of this kind (on this axis)
        if (axis) { perAxis.push({kind: kind, axis: axis, at_least: 1, because: [because]}); return; }
        var n = perKind[kind] || (perKind[kind] = {kind: kind, axis: null, at_least: 0, because: []});
        n.at_least += 1;
        n.because.push(because);
    }
    // an unset title is plotly's placeholder ("Click to enter Plot title"), drawn only when editable
    var placeholders = Object.keys(fl._dfltTitle || {}).map(function (k) { return fl._dfltTitle[k]; });
    function titleOf(obj) {
        var text = obj && obj.title && obj.title.text;
        return hasText(text) && placeholders.indexOf(text) < 0 ? text : '';
    }
    var titled = [];
    if (titleOf(fl)) titled.push('the figure');
    ['xaxis', 'yaxis'].forEach(function (letter) {
        ((fl._subplots || {})[letter] || []).forEach(function (id) {
            var ax = fl[id.charAt(0) + 'axis' + id.slice(1)];
            if (!ax || ax.visible === false) return;
            if (titleOf(ax)) titled.push('axis ' + id);
            var none = ax.tickmode === 'array' && !(ax.tickvals && ax.tickvals.length);
            if (ax.showticklabels && !none) need('tick', 'axis ' + id + ' is visible and shows tick labels', id);
        });
    });
    titled.forEach(function (what) { need('title', what + ' has a title'); });
    (fl.annotations || []).forEach(function (a, i) {
        if (a.visible !== false && hasText(a.text) && onPaper(a.xref) && onPaper(a.yref))
            need('annotation', 'annotation ' + i + ' ("' + String(a.text).slice(0, 30) + '") is on the paper');
    });
    var shown = data.filter(function (t) { return t.visible === true; });
    // (a trace type the legend cannot show, such as sankey, has no showlegend)
    if (fl.showlegend && data.some(function (t) { return t.visible !== false && t.showlegend; }))
        need('legend', 'the legend is shown with a trace in it');
    if (shown.some(function (t) { return t.showscale || (t.marker && t.marker.showscale) ||
                                        (t.coloraxis && fl[t.coloraxis] && fl[t.coloraxis].showscale); }))
        need('colorbar', 'a trace shows a colour bar');
    shown.forEach(function (t) {
        var name = t.type + ' trace ' + t.index + (t.name ? ' ("' + t.name + '")' : '');
        if (t.type === 'heatmap' && hasText(t.texttemplate) && some(t.z, function (row) { return some(row, present); }))
            need('heatmap', name + ' has a texttemplate and a cell with a value');
        if (t.type === 'histogram2d' && hasText(t.texttemplate))
            need('heatmap', name + ' has a texttemplate');
        if (t.type === 'sankey' && t.node && anyText(t.node.label) && t.link && some(t.link.value, present))
            need('sankey', name + ' has node labels and links');
        // plotly writes no text at a bar or point without a value (null, NaN)
        var values = t.orientation === 'h' ? t.x : t.y;
        if (t.type === 'bar' && t.textposition !== 'none' && labelled(t, values))
            need('bar', name + ' has text at a bar with a value');
        if (t.type === 'scatter' && /text/.test(t.mode || '') && labelled(t, t.y))
            need('point', name + ' has mode "' + t.mode + '" and text at a point with a value');
    });
    return perAxis.concat(Object.keys(perKind).map(function (k) { return perKind[k]; }));
}

function name(t) { return (t.axis ? t.axis + ' ' : '') + t.kind + ' "' + t.label + '"'; }

var figures = [];
var plots = !root ? []
          : root.matches && root.matches('.js-plotly-plot') ? [root] : root.querySelectorAll('.js-plotly-plot');
Array.prototype.forEach.call(plots, function (gd, g) {
    var where = (gd.closest('[id]') || gd).id || ('figure ' + g);
    var fl = gd._fullLayout, drawnTitle = gd.querySelector('.g-gtitle text');
    var title = (drawnTitle ? drawnTitle.textContent : '').replace(/\s+/g, ' ').trim();
    var fig = {where: where, title: title, drawn: !!fl, counts: {}, axes: {}, minimums: [], overlaps: [], cut_off: [],
               too_small: []};
    figures.push(fig);
    if (!fl) return;
    var texts = [];
    Array.prototype.forEach.call(gd.querySelectorAll('svg text'), function (el) {
        if (el.closest('.hoverlayer')) return;
        var label = (el.textContent || '').trim(), m = el.getScreenCTM();
        if (!label || !m || !visible(el)) return;
        var kind = kindOf(el), axis = null;
        fig.counts[kind] = (fig.counts[kind] || 0) + 1;
        if (kind === 'tick') {
            var id = /^([xy]\d*)tick2?$/.exec(el.parentNode.getAttribute('class') || '');
            if (id) { axis = id[1]; fig.axes[axis] = (fig.axes[axis] || 0) + 1; }
        }
        var t = {kind: kind, axis: axis, label: label.slice(0, 50)};
        // the font size on screen: plotly shrinks some texts by a transform (bar labels that
        // do not fit their bar), others by the font size itself (heatmap "auto" size)
        var px = parseFloat(window.getComputedStyle(el).fontSize) * Math.sqrt(Math.abs(m.a * m.d - m.b * m.c));
        if (px < legible) { fig.too_small.push([name(t), Math.round(px * 10) / 10]); return; }
        t.box = corners(el, m);
        if (!t.box) return;
        t.clips = clips(el, gd);
        texts.push(t);
    });
    fig.minimums = minimums(gd).map(function (n) {
        n.found = n.axis ? (fig.axes[n.axis] || 0) : (fig.counts[n.kind] || 0);
        return n;
    });
    var svg = gd.querySelector('.main-svg'), frame = svg.getBoundingClientRect();
    texts.forEach(function (t) {
        if (outside(t.box, frame.left, frame.top, frame.right, frame.bottom)) fig.cut_off.push([name(t), 'the figure']);
        t.clips.forEach(function (c) {
            if (outside(t.box, c[1], c[2], c[3], c[4])) fig.cut_off.push([name(t), c[0]]);
        });
    });
    for (var i = 0; i < texts.length; i++)
        for (var j = i + 1; j < texts.length; j++)
            if (!separated(texts[i].box, texts[j].box)) fig.overlaps.push([name(texts[i]), name(texts[j])]);
});
return figures;
"""


@dataclass(frozen=True)
class Minimum:
    """At least ``at_least`` texts of ``kind`` (on ``axis``, for tick labels): one for each
    of ``because`` (what in the figure asks for them); ``found`` were measured with
    ``selector``."""

    kind: str
    at_least: int
    found: int
    because: tuple[str, ...]
    selector: str
    axis: str | None = None

    @property
    def met(self) -> bool:
        return self.found >= self.at_least

    def describe(self) -> str:
        where = f" on axis {self.axis}" if self.axis else ""
        reasons = "; ".join(self.because[:3]) + (f"; and {len(self.because) - 3} more" if len(self.because) > 3 else "")
        return (f"{self.found} {NOUNS.get(self.kind, self.kind + ' texts')} measured{where}, expected at least "
                f"{self.at_least} ({reasons}); does {self.selector!r} still select what plotly.js draws?")


@dataclass(frozen=True)
class FigureText:
    """The texts measured in one drawn figure, and what is wrong with them."""

    where: str  #: id of the figure's element (or of its nearest ancestor with one)
    title: str
    drawn: bool
    counts: dict[str, int]  #: kind -> texts measured
    minimums: tuple[Minimum, ...]
    overlaps: tuple[tuple[str, str], ...]  #: pairs of overlapping texts, each 'kind "label"'
    cut_off: tuple[tuple[str, str], ...]  #: texts that run out of the figure or of a clip path (and which)
    too_small: tuple[tuple[str, float], ...]  #: texts in a font under LEGIBLE_PX on screen (and its size)

    @property
    def name(self) -> str:
        return f"{self.where} ({self.title[:60]})" if self.title else self.where

    def problems(self) -> list[str]:
        """One line per overlapping pair, cut-off text, text too small and unmet minimum."""
        if not self.drawn:
            return [f"{self.name}: plotly has not drawn it (no _fullLayout)"]
        lines = [f"{self.name}: {a} overlaps {b}" for a, b in self.overlaps]
        lines += [f"{self.name}: {t} runs out of {what}" for t, what in self.cut_off]
        lines += [f"{self.name}: {t} is drawn in a {px:g} px font, under the legible {LEGIBLE_PX} px"
                  for t, px in self.too_small]
        lines += [f"{self.name}: {m.describe()}" for m in self.minimums if not m.met]
        return lines

    def summary(self) -> str:
        """``'where (title): tick 12, title 3, annotation 2'``."""
        counts = ", ".join(f"{kind} {n}" for kind, n in sorted(self.counts.items(), key=lambda kv: -kv[1]))
        return f"{self.name}: {counts or 'no text'}"


@dataclass(frozen=True)
class TextCheck:
    """Every figure under one root, measured."""

    root: str | None
    figures: tuple[FigureText, ...]
    at_least_figures: int

    @property
    def counts(self) -> Counter[str]:
        """kind -> texts measured over every figure."""
        total: Counter[str] = Counter()
        for fig in self.figures:
            total.update(fig.counts)
        return total

    @property
    def problems(self) -> list[str]:
        lines = []
        if len(self.figures) < self.at_least_figures:
            lines.append(f"{len(self.figures)} plotly figures under {self.root or 'the page'}, expected at least "
                         f"{self.at_least_figures}")
        return lines + [line for fig in self.figures for line in fig.problems()]

    def report(self) -> str:
        """The problems, then what was measured in each figure (for a failing assertion)."""
        return "\n".join(self.problems + ["texts measured:"] + ["  " + fig.summary() for fig in self.figures])


def measure_text(driver: Any, root: str | None = None, *, at_least_figures: int = 1,
                 kinds: Mapping[str, str] = KINDS) -> TextCheck:
    """Measure the texts of every plotly figure under ``root`` (a CSS selector of a figure
    or of an element holding figures; None: the whole page) in the page ``driver`` shows;
    fewer than ``at_least_figures`` figures is a problem (a root that matches nothing must
    not pass). ``kinds``: kind -> selector, in the order tried (``KINDS``; the positive
    controls pass broken ones)."""
    found = driver.execute_script(MEASURE_JS, root, list(kinds.items()), SLACK, OTHER, LEGIBLE_PX)
    return TextCheck(root, tuple(_figure(f, kinds) for f in found), at_least_figures)


def _figure(f: dict[str, Any], kinds: Mapping[str, str]) -> FigureText:
    """A ``FigureText`` from what ``MEASURE_JS`` returned for one figure."""
    minimums = tuple(Minimum(m["kind"], m["at_least"], m["found"], tuple(m["because"]),
                             kinds.get(m["kind"], "(no selector)"), m["axis"]) for m in f["minimums"])
    return FigureText(where=f["where"], title=f["title"], drawn=f["drawn"], counts=dict(f["counts"]),
                      minimums=minimums, overlaps=tuple((a, b) for a, b in f["overlaps"]),
                      cut_off=tuple((t, what) for t, what in f["cut_off"]),
                      too_small=tuple((t, px) for t, px in f["too_small"]))

