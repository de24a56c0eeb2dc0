"""``python -m keyledger.services.cli``: the ``keyledger`` command."""

import sys

from keyledger.services.cli.main import main

sys.exit(main())
