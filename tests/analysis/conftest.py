"""The tiny real runs the analysis tests read (``tiny_runs``) live in tests/conftest.py,
shared with the plot and report tests."""
