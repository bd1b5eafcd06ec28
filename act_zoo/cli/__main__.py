"""``python -m act_zoo.cli`` (also what ``torchrun ... -m act_zoo.cli`` runs)."""

import sys

from ._main import main

sys.exit(main())
