"""The public surface: lazy exports, and the analysis side never imports torch."""

from __future__ import annotations

import subprocess
import sys

import losslines


def test_every_export_resolves():
    for name in losslines.__all__:
        assert getattr(losslines, name) is not None, name


def test_store_and_analysis_do_not_import_torch():
    code = ("import sys, losslines, losslines.store, losslines.analysis; "
            "losslines.open_store; "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:5]")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_unknown_attribute_is_an_attribute_error():
    try:
        losslines.no_such_thing
    except AttributeError as err:
        assert "no_such_thing" in str(err)
    else:
        raise AssertionError("expected AttributeError")
