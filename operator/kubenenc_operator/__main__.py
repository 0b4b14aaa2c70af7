"""``python -m kubenenc_operator`` runs the operator (same as ``kubenenc operator``)."""

import sys

from kubenenc_operator.cli import main

sys.exit(main())
