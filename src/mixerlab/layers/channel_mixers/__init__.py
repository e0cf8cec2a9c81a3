"""Channel mixers, one family per module.

Importing this package imports every module in it, which registers the blocks they define: adding
a family is adding a file, with no list to edit here.
"""

import importlib
import pkgutil

for _info in pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")
