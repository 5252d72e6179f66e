"""Two nodes, one PostgreSQL catalog: accounts are shared out by lease, a dead node's taken over.

Two real ``archiver run`` daemons (``node-a`` and ``node-b``, each with its own spool, both
on the suite's PostgreSQL and one store directory) capture four accounts on two fake
Bluesky servers. While they run, the test samples the ``leases`` table together with the
running capture runs (one statement, so one snapshot) and checks at every sample:

- no account has two unexpired lease holders, and every holder is one of the nodes;
- no account has two runs in progress, and the run in progress holds the account's lease
  (same node, same fencing generation).

Every account gets a complete run; every run whose lease was sampled was made by the
node holding it; no two runs share a lease generation. Then ``node-b`` is killed (SIGKILL)
while it holds a lease (it is stopped with SIGSTOP first, so the lease it is killed with is
known for certain), and ``node-a`` must take the account over once ``[daemon] lease_ttl``
(3 s) has passed since ``node-b``'s last renewal, and complete a run of it. Finally
``node-b`` starts again: its spool recovery stores what the killed run wrote, so every
record the catalog points to is in the store.
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import and_, func, select

from archiver.catalog import Catalog
from archiver.catalog.models import CaptureRun, Heartbeat, Lease, StoredFile, WarcRecord
from tests.connectors.fake_bluesky import FakeBluesky
from tests.daemontools import (
    CatalogProbe,
    DaemonProcess,
    bluesky_account,
    daemons,
    describe_runs_and_leases,
    fake_bluesky_server,
    leases,
    make_node,
    max_run_id,
    runs_after,
    wait_for,
)
from tests.warctools import assert_all_digests_pass

NODES = ("node-a", "node-b")
#: Two accounts on each of two fake servers.
ACCOUNTS = ("city-1", "city-2", "city-3", "city-4")
POSTS_PER_FAKE = 120
DAEMON: dict[str, str | int] = {
    "lease_ttl": "3s",
    "jitter": "0.1s",  # the smallest the configuration accepts: "0s" is refused
    "retry_after": "1s",
    "heartbeat_every": "1s",
    "workers": 2,
    "stop_timeout": "20s",
}
LEASE_TTL = timedelta(seconds=3)
#: Every bounded wait of this test.
WAIT = 60.0
STOPS_WITHIN = 30.0


@dataclass
class LeaseWatch:
    """Samples of leases and running runs, and what was wrong in any of them."""

    probe: CatalogProbe
    #: Runs of killed processes, no longer checked (their rows stay "running").
    dead_runs: set[int] = field(default_factory=set)
    #: (account, generation) -> every holder seen with an unexpired lease of that generation.
    holders: dict[tuple[str, int], set[str]] = field(default_factory=lambda: defaultdict(set))
    samples: int = 0
    violations: list[str] = field(default_factory=list)

    def sample(self) -> None:
        """One snapshot: every lease with the runs in progress on its account."""
        rows = self.probe.read(_snapshot)
        if rows is None:
            return  # not migrated yet
        now = datetime.now(UTC)
        self.samples += 1
        holding: dict[str, tuple[str, int]] = {}
        running: dict[str, list[tuple[int, str | None, int | None]]] = defaultdict(list)
        for account, holder, generation, expires, run_id, node, run_generation in rows:
            if holder is not None and expires is not None and expires > now:
                holding[account] = (holder, generation)
                self.holders[(account, generation)].add(holder)
                if holder.rpartition(":")[0] not in NODES:
                    self.violations.append(f"{now}: {account} held by unknown {holder}")
            if run_id is not None and run_id not in self.dead_runs:
                running[account].append((run_id, node, run_generation))
        for account, runs in running.items():
            if len(runs) > 1:
                self.violations.append(f"{now}: {account} has runs in progress {runs}")
            for run_id, node, run_generation in runs:
                held = holding.get(account)
                if held is None or held[1] != run_generation or not held[0].startswith(f"{node}:"):
                    self.violations.append(
                        f"{now}: run #{run_id} of {account} by {node} (generation "
                        f"{run_generation}) in progress, but the lease is {held}"
                    )


def _snapshot(
    catalog: Catalog,
) -> list[tuple[str, str | None, int, datetime | None, int | None, str | None, int | None]]:
    with catalog.reader() as s:
        rows = s.execute(
            select(
                Lease.account_id,
                Lease.holder,
                Lease.generation,
                Lease.expires_at,
                CaptureRun.id,
                CaptureRun.node,
                CaptureRun.lease_generation,
            )
            .select_from(Lease)
            .outerjoin(
                CaptureRun,
                and_(CaptureRun.account_id == Lease.account_id, CaptureRun.status == "running"),
            )
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def _started(probe: CatalogProbe, daemon: DaemonProcess) -> bool:
    """Whether the daemon finished start-up: its node's heartbeat row names its pid."""

    def query(catalog: Catalog) -> bool:
        with catalog.reader() as s:
            beat = s.get(Heartbeat, daemon.node.name)
            return beat is not None and beat.pid == daemon.pid

    return bool(probe.read(query))


def _populate(fake: FakeBluesky, rng: random.Random) -> None:
    for i in range(POSTS_PER_FAKE):
        root = fake.post(f"Notice {i}", images=[(f"Photo {i}", "image/png")] if i % 4 == 0 else [])
        for j in range(rng.randint(0, 3)):
            fake.reply(root, f"Reply {j} to notice {i}")


def _fakes(stack: ExitStack, rng: random.Random) -> Iterator[FakeBluesky]:
    for _ in range(2):
        fake = stack.enter_context(fake_bluesky_server())
        _populate(fake, rng)
        yield fake


def test_two_nodes_share_accounts_by_lease_and_take_over_a_dead_node(
    tmp_path: Path, pg_database_url: str
) -> None:
    """Leases keep captures of an account apart across nodes; a dead node's lease expires."""
    rng = random.Random(4)
    with ExitStack() as stack:
        fakes = list(_fakes(stack, rng))
        accounts = "\n".join(
            bluesky_account(account, fakes[n // 2], schedule="10s", page_size=10)
            for n, account in enumerate(ACCOUNTS)
        )
        nodes = {
            name: make_node(
                tmp_path / name,
                name=name,
                catalog_url=pg_database_url,
                store=tmp_path / "store",
                accounts=accounts,
                daemon=DAEMON,
            )
            for name in NODES
        }
        probe = CatalogProbe(pg_database_url)
        stack.callback(probe.close)
        started = stack.enter_context(daemons())
        watch = LeaseWatch(probe)

        def explain() -> str:
            return describe_runs_and_leases(probe)

        a, b = DaemonProcess(nodes["node-a"]), DaemonProcess(nodes["node-b"])
        started += [a, b]

        # 1. Both nodes capture; every account completes a run, by whichever node.
        def all_captured() -> bool:
            watch.sample()
            runs = probe.read(lambda c: runs_after(c, 0)) or []
            return {r.account_id for r in runs if r.status == "complete"} == set(ACCOUNTS)

        t0 = time.monotonic()
        wait_for(
            all_captured,
            what="a complete run of every account",
            timeout=WAIT,
            watch=[a, b],
            explain=explain,
        )
        first_round = time.monotonic() - t0

        # 2. Kill node-b while it holds a lease: stop it, look, and kill it only if it does.
        def kill_b_holding() -> list[Lease] | None:
            watch.sample()
            if not any(lease.holder == b.holder for lease in probe.read(leases) or []):
                return None
            b.signal(signal.SIGSTOP)
            now = datetime.now(UTC)
            held = [
                lease
                for lease in leases(probe.catalog)
                if lease.holder == b.holder
                and lease.expires_at is not None
                and lease.expires_at > now
            ]
            if not held:
                b.signal(signal.SIGCONT)
                return None
            assert b.kill() == -signal.SIGKILL
            return held

        held_at_kill = wait_for(
            kill_b_holding,
            what="node-b to hold a lease",
            timeout=WAIT,
            watch=[a, b],
            explain=explain,
        )
        killed_at = time.monotonic()
        with probe.catalog.reader() as s:
            watch.dead_runs |= set(
                s.scalars(
                    select(CaptureRun.id).where(
                        CaptureRun.node == "node-b", CaptureRun.status == "running"
                    )
                )
            )
        # Dead, node-b renews nothing more: these are its leases' final expiries.
        final = {
            lease.account_id: lease for lease in leases(probe.catalog) if lease.holder == b.holder
        }
        assert set(final) == {lease.account_id for lease in held_at_kill}
        ttls = {
            account: lease.expires_at - lease.renewed_at
            for account, lease in final.items()
            if lease.expires_at is not None and lease.renewed_at is not None
        }
        assert set(ttls) == set(final) and set(ttls.values()) == {LEASE_TTL}, (
            f"node-b's leases last {ttls}, not [daemon] lease_ttl = {LEASE_TTL}"
        )
        last_id = max_run_id(probe.catalog)

        # 3. node-a takes each of those accounts over once the lease expired, and completes it.
        def taken_over() -> dict[str, CaptureRun] | None:
            watch.sample()
            later = probe.read(lambda c: runs_after(c, last_id)) or []
            done = {
                r.account_id: r
                for r in later
                if r.account_id in final and r.node == "node-a" and r.status == "complete"
            }
            return done if set(done) == set(final) else None

        takeovers = wait_for(
            taken_over,
            what="node-a to take over node-b's accounts",
            timeout=WAIT,
            watch=[a],
            explain=explain,
        )
        takeover_after = time.monotonic() - killed_at
        for account, run in takeovers.items():
            dead = final[account]
            assert dead.expires_at is not None
            assert run.lease_generation > dead.generation, (account, run.lease_generation)
            assert run.started_at >= dead.expires_at, (
                f"{account}: node-a started at {run.started_at}, before node-b's lease expired "
                f"at {dead.expires_at}"
            )

        # 4. node-b comes back: its spool recovery stores what the killed run had written.
        b2 = DaemonProcess(nodes["node-b"])
        started.append(b2)

        def b2_started() -> bool:
            watch.sample()
            return _started(probe, b2)

        wait_for(
            b2_started, what="node-b to start again", timeout=WAIT, watch=[a, b2], explain=explain
        )
        with probe.catalog.reader() as s:
            killed_runs = list(
                s.scalars(select(CaptureRun).where(CaptureRun.id.in_(watch.dead_runs)))
            )
        for d in (a, b2):
            code, _ = d.terminate(STOPS_WITHIN)
            assert code == 0, d.tail()

        # What held throughout, and what the catalog says now.
        assert watch.violations == [], "\n".join(watch.violations[:20]) + "\n" + explain()
        with probe.catalog.reader() as s:
            runs = list(s.scalars(select(CaptureRun).order_by(CaptureRun.id)))
            unstored = list(
                s.scalars(
                    select(WarcRecord.file_id)
                    .distinct()
                    .where(WarcRecord.file_id.not_in(select(StoredFile.id)))
                )
            )
            generations = s.execute(
                select(CaptureRun.account_id, CaptureRun.lease_generation, func.count())
                .group_by(CaptureRun.account_id, CaptureRun.lease_generation)
                .having(func.count() > 1)
            ).all()
        assert generations == [], f"runs sharing a lease generation: {generations}"
        complete = Counter((r.account_id, r.node) for r in runs if r.status == "complete")
        assert {account for account, _ in complete} == set(ACCOUNTS), complete
        matched = 0
        for r in runs:
            seen = watch.holders.get((r.account_id, r.lease_generation))
            if seen:
                matched += 1
                assert {h.rpartition(":")[0] for h in seen} == {r.node}, (r.id, r.node, seen)
                assert len(seen) == 1, (r.id, seen)
        assert matched >= len(ACCOUNTS), (matched, len(runs))
        assert unstored == [], (
            f"committed records in files that never reached the store: {unstored}"
        )
        assert_all_digests_pass(sorted((tmp_path / "store").glob("warc/**/*.warc.gz")))

        print(
            f"{watch.samples} samples; {len(runs)} runs ({matched} sampled holding their lease): "
            f"{dict(Counter((r.node, r.status) for r in runs))}; first round {first_round:.1f} s; "
            f"node-b killed holding {sorted(final)}, taken over by node-a "
            f"{takeover_after:.1f} s later; node-b's killed runs now "
            f"{[(r.id, r.account_id, r.status) for r in killed_runs]}"
        )


def _errors(daemon: DaemonProcess) -> list[str]:
    """The error lines of a daemon's log (JSON events at level error, and plain errors)."""
    lines = daemon.stderr_path.read_text(encoding="utf-8", errors="replace").splitlines()
    return [line for line in lines if '"level": "error"' in line or line.startswith("error:")]


def test_two_nodes_start_together_on_a_new_catalog(tmp_path: Path, pg_database_url: str) -> None:
    """Two nodes started at the same moment on a new catalog both come up and capture.

    The migration lock lets one migrate while the other waits; then both register the
    same accounts and take the same accounts' first leases at about the same time.
    Neither may fail or log an error for it: a lease the other node took is "busy".
    """
    with ExitStack() as stack:
        (fake,) = list(_fakes(stack, random.Random(5)))[:1]
        accounts = "\n".join(
            bluesky_account(account, fake, schedule="10s", page_size=10) for account in ACCOUNTS
        )
        # Disabled accounts are registered but never captured: they widen the window in
        # which both nodes register accounts, without adding work.
        accounts += "".join(
            "\n" + bluesky_account(f"idle-{n}", fake) + "enabled = false\n" for n in range(40)
        )
        nodes = [
            make_node(
                tmp_path / name,
                name=name,
                catalog_url=pg_database_url,
                store=tmp_path / "store",
                accounts=accounts,
                daemon=DAEMON,
            )
            for name in NODES
        ]
        probe = CatalogProbe(pg_database_url)
        stack.callback(probe.close)
        started = stack.enter_context(daemons())
        started += [DaemonProcess(node) for node in nodes]

        def all_captured() -> bool:
            runs = probe.read(lambda c: runs_after(c, 0)) or []
            up = all(_started(probe, d) for d in started)
            return up and {r.account_id for r in runs if r.status == "complete"} == set(ACCOUNTS)

        wait_for(
            all_captured,
            what="both nodes up and a complete run of every account",
            timeout=WAIT,
            watch=started,
            explain=lambda: describe_runs_and_leases(probe),
        )
        for d in started:
            code, _ = d.terminate(STOPS_WITHIN)
            assert code == 0, d.tail()
        errors = {d.node.name: _errors(d) for d in started}
        assert errors == {name: [] for name in NODES}, errors
