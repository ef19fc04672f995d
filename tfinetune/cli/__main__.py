"""`python -m tfinetune.cli`: the command line."""

import sys

from tfinetune.cli.main import main

sys.exit(main())
