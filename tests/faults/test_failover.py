"""A fleet's captures through a PostgreSQL failover (issue 15, with issue 10's fault proxy): nothing lost.

Four application processes write captures through a fault proxy to one PostgreSQL database. Mid-run the
primary goes away as in a failover: every connection is cut (TCP RST) and new ones are refused for a few
seconds, then the same address answers again (the standby promoted behind it). Each writer keeps its batch,
retries with backoff, and reconnects; every record reaches the store, none is dropped.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from ..integration.capture_support import PG_PORT, pg_url, postgres_database
from .support import FaultProxy, count, fleet_reports, start_fleet

PROCESSES, CALLS = 4, 6_000
PAUSE = 0.1  # seconds every 100 calls: about 6 s of traffic per process, so the failover lands in the middle of it
OUTAGE = 3.0  # seconds with no server at the address


def test_a_fleet_loses_nothing_through_a_postgresql_failover(tmp_path: Path) -> None:
    with postgres_database() as database:
        direct = pg_url(database)
        proxy = FaultProxy(PG_PORT)
        try:
            with start_fleet(pg_url(database, proxy.port), tmp_path, PROCESSES, CALLS, pause=PAUSE) as children:
                outputs: list[tuple[str, str]] = []
                reader = threading.Thread(
                    target=lambda: outputs.extend(child.communicate(timeout=600) for child in children)
                )
                reader.start()
                deadline = time.monotonic() + 120
                while count(direct) < 1_000 and time.monotonic() < deadline:  # the fleet is writing
                    time.sleep(0.1)
                before = count(direct)
                assert 0 < before < PROCESSES * CALLS, "the failover must land while the fleet writes"
                proxy.mode = "down"  # the primary is gone: connections cut, new ones refused
                proxy.reset()
                time.sleep(OUTAGE)
                proxy.mode = "pass"  # the promoted standby answers at the same address
                reader.join(600)
                assert not reader.is_alive()
            reports = fleet_reports(children, outputs)
            assert all(report["flushed"] for report in reports)
            assert sum(report["captures_dropped"] for report in reports) == 0
            assert sum(report["captures_written"] for report in reports) == PROCESSES * CALLS
            assert count(direct) == PROCESSES * CALLS
            # The outage was seen: a writer said it kept its records and would retry.
            assert any("retrying in" in err for _, err in outputs), [err[-500:] for _, err in outputs]
        finally:
            proxy.close()
