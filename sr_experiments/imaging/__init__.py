"""Imaging: the low layer every stage imports downward. MATLAB-exact bicubic (``imresize.py``),
image files in and out (``io.py``; 16-bit colour PNG in ``png16.py``) and labelled side-by-side
pictures (``annotate.py``). Nothing here imports a stage above it (``tests/test_imaging_layer.py``)."""
