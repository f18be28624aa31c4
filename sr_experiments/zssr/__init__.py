"""Zero-shot SR (ZSSR, Shocher, Cohen and Irani, CVPR 2018): a small network trained at test time on
the one input image, then applied to it. ``run.py`` is ``zssr.py`` / ``sr-zssr``; ``method.py`` runs
one image; the parts are ``pairs.py``, ``lr_policy.py``, ``module.py`` and ``ensemble.py``."""
