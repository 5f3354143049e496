"""relabscope and relabscope.integrations import without Lightning and transformers; an
integration that needs one says which extra to install."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_relabscope_imports_without_lightning_or_transformers() -> None:
    code = textwrap.dedent("""
        import sys
        sys.modules["lightning"] = None        # as if not installed: importing them fails
        sys.modules["transformers"] = None
        import relabscope, relabscope.integrations
        assert "torch" not in sys.modules, "importing the package loaded torch"
        from relabscope.integrations import RunCapture, sample_table
        assert sample_table([0, 1], [1]).key == ["train/0", "train/1", "test/0"]
        for name, extra in (("RelabscopeCallback", "lightning"), ("RelabscopeTrainerCallback", "hf")):
            try:
                getattr(relabscope.integrations, name)
            except ImportError as exc:
                assert f"relabscope[{extra}]" in str(exc), exc
            else:
                raise AssertionError(name + " imported without its framework")
        assert not any(m == "lightning" or m.startswith(("lightning.", "transformers."))
                       for m, v in sys.modules.items() if v is not None)
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
