"""Training subtree of dwp-hub: real data → source CNNs → kernel sets → VAE priors → prior folders.

Not part of the installed runtime (``dwp_hub``); run from the repository root as ``python -m training``.
"""
