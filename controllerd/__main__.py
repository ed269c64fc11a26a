"""`python -m controllerd` is the `controllerd` command."""

import sys

from controllerd.cli import main

sys.exit(main())
