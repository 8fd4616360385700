"""``python -m gradleak.cli ...`` is the ``gradleak`` command."""

import sys

from gradleak.cli.main import main

sys.exit(main())
