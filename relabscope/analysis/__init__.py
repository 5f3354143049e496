"""Analysis of run logs: plain arrays in, arrays and tables out."""

from relabscope.analysis.flipflops import count_flipflops, flipflop_mask

__all__ = ["count_flipflops", "flipflop_mask"]
