"""`python -m inventory` is `inventoryd`."""

import sys

from inventory.cli import main

sys.exit(main())
