"""Which zoo exports open in chaiNNer / ComfyUI (spandrel detects them), pinned, and shown in the README."""

from __future__ import annotations

import pytest
from conftest import ROOT

from sr_experiments.tools.chainner import markdown, support

# spandrel's architecture for each exportable zoo network (every scale it supports), None: only here.
EXPECTED = {
    "atd": "ATD", "compact": "Compact", "dat": "DAT", "drct": "DRCT", "edsr": None, "edsr_large": None, "espcn": None,
    "fsrcnn": None, "hat": "HAT", "imdn": None, "omnisr": "OmniSR", "plksr": "PLKSR", "rcan": "RCAN",
    "realplksr": "PLKSR", "rgt": "RGT", "rrdbnet": "ESRGAN", "safmn": "SAFMN", "seed": None, "span": "SPAN",
    "srcnn": None, "swinir": "SwinIR", "swinir_light": "SwinIR", "vdsr": None,
}


def _pinned() -> dict[str, dict[int, str | None]]:
    from sr_experiments.models import supports_scale

    return {name: {s: arch for s in (2, 3, 4) if supports_scale(name, s)} for name, arch in EXPECTED.items()}


def test_readme_lists_the_pinned_support() -> None:
    readme = (ROOT / "README.md").read_text()
    assert markdown(_pinned()) in readme, "README's chaiNNer list is stale: paste `python -m sr_experiments.tools.chainner`"


@pytest.mark.slow
def test_spandrel_detects_exactly_the_pinned_networks() -> None:
    """Every zoo network exported as export.py writes it, read by spandrel's ModelLoader (~30 s)."""
    assert support() == _pinned()
