"""Tools: run comparison (``compare.py``), network info (``info.py``), benchmark downloads."""
