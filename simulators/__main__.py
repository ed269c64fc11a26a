"""`python -m simulators` is the `simulators` command."""

import sys

from simulators.cli import main

sys.exit(main())
