"""`python -m consumer` = the `stockwatch` command."""

import sys

from consumer.cli import main

sys.exit(main())
