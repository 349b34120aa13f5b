"""``python -m serpent_arch.leaderboard``: the same as ``basicsr leaderboard``."""

import sys

from serpent_arch.leaderboard import main

sys.exit(main(sys.argv[1:]))
