"""How the project measures: FLOPs (:mod:`.flops`), peak memory (:mod:`.memory`) and the machine a number
was measured on (:mod:`.machine`). Below every user of them: the benchmarks, ``basicsr leaderboard``'s
GFLOPs column and ``basicsr doctor``."""
