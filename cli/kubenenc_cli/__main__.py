"""``python -m kubenenc_cli`` is the ``kubenenc`` command."""

import sys

from kubenenc_cli import main

sys.exit(main())
