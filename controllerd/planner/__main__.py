"""`python -m controllerd.planner FILE …`: the `controllerd plan` command on its own."""

import sys

from controllerd.planner.cli import main

sys.exit(main())
