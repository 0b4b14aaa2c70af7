"""``python -m kubenenc_worker`` is the ``kubenenc`` command."""

import sys

from kubenenc_worker.cli import main

sys.exit(main())
