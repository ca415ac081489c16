"""Other frameworks' conventions on top of atrous (``atrous.compat.tf``: TensorFlow's conv API).

Submodules are imported on demand (``from atrous.compat import tf``), so ``import atrous``
stays light.
"""
