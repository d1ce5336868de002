"""`python -m open_grpo.cli ...` is `open-grpo ...`."""

import sys

from . import main

sys.exit(main())
