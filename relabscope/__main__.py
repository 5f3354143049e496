"""``python -m relabscope``: the same CLI as the ``relabscope`` command, for machines
where the package is importable but not installed (e.g. a checkout on ``PYTHONPATH``)."""

from relabscope.cli import main

if __name__ == "__main__":  # importing the module (as tools that walk the package do) runs nothing
    main(prog_name="relabscope")
