"""``python -m deepnc`` (and ``torchrun -m deepnc``) is the ``deepnc`` command."""

import sys

from deepnc.cli import main

sys.exit(main())
