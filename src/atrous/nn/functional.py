"""``atrous.nn.functional`` is ``atrous.functional``, as ``torch.nn.functional``."""
from atrous.functional import *  # noqa: F401,F403
from atrous.functional import __all__  # noqa: F401
