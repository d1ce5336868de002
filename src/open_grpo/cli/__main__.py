"""`python -m open_grpo.cli ...` is `open-grpo ...`."""

import sys

from open_grpo.cli import main

sys.exit(main())
