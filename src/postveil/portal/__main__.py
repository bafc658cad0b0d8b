"""Run postveil-portal as ``python -m postveil.portal``.

Prefer this to ``python -m postveil.portal.daemon``. multiprocessing runs the main
module again in every parsing process that the fork server starts, unless the
module's name ends in ``.__main__`` (``_fixup_main_from_name`` in CPython 3.11's
multiprocessing/spawn.py). Running the already imported ``postveil.portal.daemon``
again makes runpy print a RuntimeWarning for each message page and attachment.
"""

import sys

from postveil.portal.daemon import main

sys.exit(main())
