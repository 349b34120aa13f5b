"""``python -m serpent_arch.infer``: the same as ``basicsr infer``."""

import sys

from serpent_arch.infer.cli import main

sys.exit(main())
