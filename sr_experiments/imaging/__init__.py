"""Imaging: the low layer every stage imports downward. MATLAB-exact bicubic (``imresize.py``),
image files in and out (``io.py``; 16-bit colour PNG in ``png16.py``), labelled side-by-side
pictures (``annotate.py``) and a network run over a whole image, tile by tile or as the x8
self-ensemble (``tiling.py``, shared by evaluation, ZSSR and inference). Nothing here imports a
stage above it (``tests/test_imaging_layer.py``)."""
