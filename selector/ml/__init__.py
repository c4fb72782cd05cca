"""The selector's model code: pure PyTorch/transformers, no Django.

Import the submodules directly (``selector.ml.scoring``); torch and transformers load only when
a function that needs them runs, so importing this package from the web process is cheap.
"""
