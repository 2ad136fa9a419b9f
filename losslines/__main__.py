"""``python -m losslines ...`` — the ``losslines`` command (also under ``torchrun ... -m losslines``)."""

import sys

from losslines.cli import main

sys.exit(main())
