"""benchmarks/wavenet_generation.py --pairs: its table sorts the triples by the cores' state it measured."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import wavenet_generation as wg  # noqa: E402


def test_trip_state_compares_both_round_trips_with_the_runs_least():
    assert wg.trip_state([95, 140], 95) == "near"
    assert wg.trip_state([440, 150], 95) == "far"
    assert wg.trip_state([95, 440], 95) == "mixed"
    assert wg.trip_state([None, 95], 95) == "unknown" and wg.trip_state([], 95) == "unknown"


def test_pairs_table_gives_every_state_its_own_row_only_when_the_triples_differ():
    def row(build, ratio, trips):
        return {"build": build, "batch1": [20_000, 20_000], "big": 20_000 * ratio, "ratio": ratio,
                "round_trip_ns": trips}
    res = {"machine": "test", "date": "today", "batch_big": 16,
           "rows": [row("avx2", 2.8, [95, 100]), row("avx2", 2.9, [96, 98]), row("avx2", 3.3, [440, 450]),
                    row("avx512", 2.7, [100, 97])]}
    lines = [x for x in wg.pairs_table(res).splitlines() if x.startswith("| avx")]
    assert [x.split("|")[1].strip() for x in lines] == ["avx2", "avx2, cores near", "avx2, cores far", "avx512"]
    cells = {x.split("|")[1].strip(): [c.strip() for c in x.split("|")[2:-1]] for x in lines}
    assert cells["avx2"][0] == "3" and cells["avx2"][-1] == "1 of 3" and cells["avx2"][1] == "95-450"
    assert cells["avx2, cores near"][-2].startswith("2.85x") and cells["avx2, cores far"][-1] == "1 of 1"
    assert "(95 ns)" in wg.pairs_table(res)
