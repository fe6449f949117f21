"""The store's SQLite metric database: appends, windows, groups, sources, concurrent writers."""

from __future__ import annotations

import math
import multiprocessing
import os
import random
import sqlite3
import statistics
import time
import warnings

import pytest

from mvc.errors import UnknownFormat, UsageError
from mvc.ids import ObjectId
from mvc.metrics import sqlite as store_db
from mvc.metrics.model import Point, Query, Source
from mvc.metrics.sqlite import MetricsDB, database_path
from mvc.repo import Repo

V1 = ObjectId("1" * 64)
V2 = ObjectId("2" * 64)
T0 = 1_772_539_200.0  # 2026-03-03T12:00:00Z
HERE = Source("web-1", "4242", (("python", "3.12.1"), ("torch", "2.13.0")))


def lat(value: float, at: float, arm: str = "stable", version: ObjectId = V1, source=HERE) -> Point:
    return Point("bert", version, "latency_ms", value, at, channel="prod", arm=arm, source=source)


def test_points_live_in_a_wal_database_inside_the_store(store: Repo) -> None:
    with MetricsDB.open(store) as db:
        assert db.append([lat(10, T0), lat(20, T0 + 1)]) == 2
    path = database_path(store)
    assert path == os.path.join(store.store_dir, "metrics", "points.db")
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == store_db.SCHEMA_VERSION


def test_reading_an_absent_database_creates_nothing(store: Repo) -> None:
    db = MetricsDB.open(store, create=False)
    assert db.summary(Query("bert", "latency_ms")).count == 0
    assert db.values(Query("bert", "latency_ms")) == []
    assert db.groups(Query("bert", "latency_ms")) == []
    assert not os.path.exists(database_path(store))


def test_summary_is_exact_and_narrows_by_channel_arm_version_and_window(store: Repo) -> None:
    db = MetricsDB.open(store)
    stable = [float(v) for v in range(1, 101)]
    db.append(lat(v, T0 + i) for i, v in enumerate(stable))
    db.append(lat(500.0 + i, T0 + i, arm="canary", version=V2) for i in range(10))
    s = db.summary(Query("bert", "latency_ms", channel="prod", arm="stable"))
    assert s.count == 100
    assert s.mean == pytest.approx(50.5)
    assert s.stdev == pytest.approx(statistics.stdev(stable))
    assert (s.min, s.max) == (1.0, 100.0)
    assert s.p50 == pytest.approx(50.5)
    assert s.p99 == pytest.approx(statistics.quantiles(stable, n=100, method="inclusive")[98])
    assert s.per_second == pytest.approx(100 / 99)  # first to last point without a window
    assert db.summary(Query("bert", "latency_ms", version=V2)).count == 10
    assert db.summary(Query("bert", "latency_ms")).count == 110
    windowed = db.summary(Query("bert", "latency_ms", arm="stable", since=T0 + 10, until=T0 + 20))
    assert windowed.count == 10 and windowed.min == 11.0 and windowed.max == 20.0
    assert windowed.per_second == pytest.approx(1.0)
    assert db.summary(Query("bert", "latency_ms", channel="staging")).count == 0
    assert db.values(Query("bert", "latency_ms", arm="canary"), limit=3) == [507.0, 508.0, 509.0]


def test_groups_by_arm_and_version(store: Repo) -> None:
    db = MetricsDB.open(store)
    db.append([lat(1, T0), lat(3, T0 + 1), lat(10, T0, arm="canary", version=V2)])
    db.append([lat(5, T0 + 2, version=V2)])  # a second version behind the stable arm
    by_arm = db.groups(Query("bert", "latency_ms", channel="prod"), by=("arm",))
    assert [(g.arm, g.version, g.summary.count) for g in by_arm] == [
        ("canary", None, 1),
        ("stable", None, 3),
    ]
    both = db.groups(Query("bert", "latency_ms"), by=("arm", "version"))
    assert [(g.arm, g.version, g.summary.mean) for g in both] == [
        ("canary", V2, 10.0),
        ("stable", V1, 2.0),
        ("stable", V2, 5.0),
    ]
    with pytest.raises(UsageError, match="group metrics by 'host'"):
        db.groups(Query("bert", "latency_ms"), by=("host",))


def test_a_batch_with_a_bad_point_writes_nothing(store: Repo) -> None:
    db = MetricsDB.open(store)
    with pytest.raises(UsageError, match="not a finite number"):
        db.append([lat(1, T0), lat(math.nan, T0 + 1)])
    assert db.summary(Query("bert", "latency_ms")).count == 0


def test_a_full_disk_fails_cleanly_and_writes_nothing_of_the_batch(store: Repo) -> None:
    from mvc.errors import MvcError

    db = MetricsDB.open(store)
    db.append([lat(1, T0)])
    assert db._db is not None
    pages = db._db.execute("PRAGMA page_count").fetchone()[0]
    db._db.execute(f"PRAGMA max_page_count = {pages + 2}")  # SQLite's "disk is full"
    with pytest.raises(MvcError, match="cannot write the metric database .*full"):
        db.append(lat(float(i), T0 + i) for i in range(20_000))
    db._db.execute("PRAGMA max_page_count = 1000000")
    assert db.summary(Query("bert", "latency_ms")).count == 1
    db.append([lat(2, T0 + 1)])
    assert db.values(Query("bert", "latency_ms")) == [1.0, 2.0]


def test_sources_are_recorded_once_with_their_environment(store: Repo) -> None:
    db = MetricsDB.open(store)
    other = Source("web-2", "7", (("python", "3.11.9"),))
    db.append([lat(1, T0), lat(2, T0 + 1)])
    db.append([lat(3, T0 + 2, arm="canary", version=V2, source=None)])
    db.append(
        [Point("bert", V2, "latency_ms", 4, T0 + 3, channel="prod", arm="canary", source=other)]
    )
    with sqlite3.connect(database_path(store)) as raw:
        assert raw.execute("SELECT count(*) FROM sources").fetchone()[0] == 2
    used = db.sources(Query("bert", "", arm="canary"))
    assert [(u.source, u.points) for u in used] == [(other, 1)]
    assert [u.source for u in db.sources(Query("bert", "latency_ms"))] == [HERE, other]


def test_a_newer_schema_is_refused(store: Repo) -> None:
    MetricsDB.open(store).append([lat(1, T0)])
    with sqlite3.connect(database_path(store)) as raw:
        raw.execute("PRAGMA user_version = 99")
    with pytest.raises(UnknownFormat, match="schema 99"):
        MetricsDB.open(store)


def test_large_windows_use_the_rollup_within_its_accuracy(
    store: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above EXACT_LIMIT points, percentiles come from the sketches: within 1%; the rest exact."""
    rng = random.Random(7)
    values = [rng.lognormvariate(4, 0.6) for _ in range(20_000)]
    db = MetricsDB.open(store)
    db.append(lat(v, T0 + i * 0.37) for i, v in enumerate(values))
    query = Query("bert", "latency_ms", since=T0 + 95.5, until=T0 + 6000.3)  # partial edges
    inside = [v for i, v in enumerate(values) if T0 + 95.5 <= T0 + i * 0.37 < T0 + 6000.3]
    exact = db.summary(query)
    monkeypatch.setattr(store_db, "EXACT_LIMIT", 100)
    rolled = db.summary(query)
    assert rolled.count == exact.count == len(inside)
    assert rolled.mean == pytest.approx(statistics.fmean(inside), rel=1e-9)
    assert rolled.stdev == pytest.approx(statistics.stdev(inside), rel=1e-9)
    assert (rolled.min, rolled.max) == (min(inside), max(inside))
    ordered = sorted(inside)
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        truth = ordered[round(q * (len(ordered) - 1))]
        assert getattr(rolled, name) == pytest.approx(truth, rel=0.011), name
        assert getattr(exact, name) == pytest.approx(
            statistics.quantiles(inside, n=100, method="inclusive")[round(q * 100) - 1]
        )


def _log_points(root: str, worker: int, count: int) -> None:
    db = MetricsDB.open(Repo(root))
    source = Source("host", str(os.getpid()))
    batch: list[Point] = []
    for i in range(count):
        batch.append(
            Point("bert", V1, "latency_ms", float(i), T0 + i, "prod", f"w{worker}", source)
        )
        if len(batch) == 100:
            db.append(batch)
            batch = []
    db.append(batch)
    db.close()


def _record_and_return(root: str, value: float) -> None:
    """A multiprocessing worker that records and returns without closing anything."""
    import mvc.metrics
    from mvc.router import Router

    decision = Router(root, "bert", "prod").route("worker")
    mvc.metrics.record(decision, repo=root, latency_ms=value)


def test_a_multiprocessing_worker_flushes_when_it_returns(st) -> None:
    from mvc.ops import deploy as ops

    ops.set_channel(st.repo, "bert", "prod", "v1.4.0")
    # fork: such a worker leaves through os._exit, past atexit (spawn's leave normally)
    worker = multiprocessing.get_context("fork").Process(
        target=_record_and_return, args=(st.root, 42.0)
    )
    with warnings.catch_warnings():  # "multi-threaded process": other tests' server threads
        warnings.simplefilter("ignore", DeprecationWarning)
        worker.start()
    worker.join(timeout=120)
    assert worker.exitcode == 0
    assert MetricsDB.open(st.repo).values(Query("bert", "latency_ms")) == [42.0]


@pytest.mark.slow
def test_eight_processes_logging_at_once_lose_no_point(store: Repo) -> None:
    workers, per_worker = 8, 10_000
    context = multiprocessing.get_context("spawn")
    procs = [
        context.Process(target=_log_points, args=(store.root, w, per_worker))
        for w in range(workers)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=300)
        assert proc.exitcode == 0
    db = MetricsDB.open(store)
    assert db.summary(Query("bert", "latency_ms")).count == workers * per_worker
    groups = db.groups(Query("bert", "latency_ms"), by=("arm",))
    assert [(g.arm, g.summary.count, g.summary.max) for g in groups] == [
        (f"w{w}", per_worker, per_worker - 1.0) for w in range(workers)
    ]
    assert len(db.sources(Query("bert", "latency_ms"))) == workers


# --- recording from serving code ------------------------------------------------------------------


def test_record_tags_points_from_a_route_decision(st) -> None:
    import mvc
    import mvc.metrics
    from mvc.ops import deploy as ops

    ops.set_channel(st.repo, "bert", "prod", "v1.4.0")
    ops.deploy_shadow(st.repo, "bert", "prod", "v1.6.0")
    router = mvc.Router(st.repo, "bert", "prod")
    decisions = [router.route(f"user-{i}") for i in range(40)]
    with mvc.metrics.Recorder(st.repo, max_points=10_000, max_delay=0, clock=lambda: T0) as rec:
        for i, decision in enumerate(decisions):
            rec.record(decision, latency_ms=10.0 + i, error=0)
        rec.record(decisions[0], arm="shadow", latency_ms=99.0, agree=1)
        assert rec.pending == 82  # buffered: nothing written before flush or close
        db = MetricsDB.open(st.repo, create=False)
        assert db.summary(Query("bert", "latency_ms")).count == 0
    db = MetricsDB.open(st.repo)
    groups = db.groups(Query("bert", "latency_ms", channel="prod"), by=("arm", "version"))
    assert [(g.arm, g.version, g.summary.count) for g in groups] == [
        ("shadow", st.ids["bert@v1.6.0"], 1),
        ("stable", st.ids["bert@v1.4.0"], 40),
    ]
    assert db.summary(Query("bert", "agree", arm="shadow")).mean == 1.0
    [use] = db.sources(Query("bert", "latency_ms"))
    environment = dict(use.source.environment)
    assert use.source.process == str(os.getpid())
    assert environment["python"] == __import__("platform").python_version()
    assert environment["mvc"] == mvc.__version__


def test_recorder_flushes_when_full_and_after_its_delay(st) -> None:
    import threading

    import mvc.metrics
    from mvc.ops import deploy as ops

    ops.set_channel(st.repo, "bert", "prod", "v1.4.0")
    decision = mvc.Router(st.repo, "bert", "prod").route("k")
    db = MetricsDB.open(st.repo)
    with mvc.metrics.Recorder(st.repo, max_points=5, max_delay=0) as rec:
        for _ in range(4):
            rec.record(decision, latency_ms=1.0)
        assert rec.pending == 4
        rec.record(decision, latency_ms=1.0)
        assert rec.pending == 0 and db.summary(Query("bert", "latency_ms")).count == 5
    timed = mvc.metrics.Recorder(st.repo, max_points=1000, max_delay=0.05)
    timed.record(decision, latency_ms=2.0)
    done = threading.Event()
    for _ in range(200):
        if timed.pending == 0:
            done.set()
            break
        done.wait(0.02)
    assert done.is_set(), "the background flush did not run"
    assert db.summary(Query("bert", "latency_ms")).count == 6
    timed.close()
    with pytest.raises(RuntimeError, match="closed"):
        timed.record(decision, latency_ms=3.0)
    # a full batch goes to the timer thread at once, not after max_delay
    with mvc.metrics.Recorder(st.repo, max_points=2, max_delay=600) as kicked:
        kicked.record(decision, latency_ms=4.0, error=0)
        for _ in range(250):
            if kicked.pending == 0:
                break
            time.sleep(0.02)
        assert kicked.pending == 0
        assert db.summary(Query("bert", "latency_ms")).count == 7


def test_record_uses_the_shared_recorder_and_flushes_at_exit(st, run_mvc) -> None:
    import subprocess
    import sys

    from mvc.ops import deploy as ops

    ops.set_channel(st.repo, "bert", "prod", "v1.4.0")
    code = (
        "import mvc, mvc.metrics\n"
        f"router = mvc.Router({st.root!r}, 'bert', 'prod')\n"
        "for i in range(3):\n"
        "    mvc.metrics.record(router.route(str(i)), latency_ms=5.0 + i, error=0)\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=st.root, check=True)
    summary = MetricsDB.open(st.repo).summary(Query("bert", "latency_ms", arm="stable"))
    assert (summary.count, summary.mean) == (3, 6.0)


# --- commit-time metrics through the same protocol ------------------------------------------------


def test_commit_metrics_answer_the_same_queries(store: Repo, cli, make_model) -> None:
    from mvc.metrics.model import MetricSource
    from mvc.ops.metrics import CommitMetrics, metric_source

    make_model("models/bert", seed=0)
    version = ObjectId(
        cli("commit", "models/bert", "-m", "one", "--metric", "accuracy=0.91").stdout.strip()
    )
    source: MetricSource = metric_source(store, "commit")
    assert isinstance(source, CommitMetrics)
    s = source.summary(Query("bert", "accuracy", version=version))
    assert (s.count, s.mean, s.p99) == (1, 0.91, 0.91)
    assert source.values(Query("bert", "accuracy", version=version)) == [0.91]
    # commit metrics have no channel or arm, and belong to a version
    assert source.summary(Query("bert", "accuracy", version=version, arm="canary")).count == 0
    assert source.summary(Query("bert", "accuracy")).count == 0
    assert source.summary(Query("bert", "loss", version=version)).count == 0
    when = parse_commit_time(store, version)
    assert source.summary(Query("bert", "accuracy", version=version, since=when + 1)).count == 0
    production = metric_source(store)
    assert isinstance(production, MetricsDB)
    assert production.summary(Query("bert", "accuracy", version=version)).count == 0
    with pytest.raises(UsageError, match="unknown metric origin"):
        metric_source(store, "prometheus?")


def parse_commit_time(repo: Repo, version: ObjectId) -> float:
    from mvc.instants import parse_instant

    return parse_instant(repo.objects.get_version(version).time).timestamp()


def test_a_forked_worker_does_not_write_its_parents_pending_points(st) -> None:
    import mvc.metrics
    from mvc.metrics.recorder import default_recorder
    from mvc.ops import deploy as ops

    ops.set_channel(st.repo, "bert", "prod", "v1.4.0")
    decision = mvc.Router(st.repo, "bert", "prod").route("k")
    recorder = mvc.metrics.Recorder(st.repo, max_points=100, max_delay=0)
    recorder.record(decision, latency_ms=1.0)
    recorder.record(decision, latency_ms=2.0)
    assert default_recorder(st.repo) is default_recorder(st.repo)
    with warnings.catch_warnings():  # "multi-threaded process": other tests' server threads
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the worker
        code = 1
        try:
            assert recorder.pending == 0
            recorder.record(decision, latency_ms=3.0)
            recorder.close()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    recorder.close()
    values = MetricsDB.open(st.repo).values(Query("bert", "latency_ms"))
    assert sorted(values) == [1.0, 2.0, 3.0]


def test_a_failed_write_keeps_points_within_a_bound_and_bad_values_fail_early(st) -> None:
    import mvc.metrics
    from mvc.errors import MvcError
    from mvc.ops import deploy as ops

    ops.set_channel(st.repo, "bert", "prod", "v1.4.0")
    decision = mvc.Router(st.repo, "bert", "prod").route("k")
    rec = mvc.metrics.Recorder(st.repo, max_points=1000, max_delay=0, max_pending=3)
    with pytest.raises(ValueError, match="latency_ms=nan is not a finite number"):
        rec.record(decision, latency_ms=math.nan)
    blocker = database_path(st.repo)
    os.makedirs(blocker)  # the database cannot be opened: every write fails
    for value in (1.0, 2.0):
        rec.record(decision, latency_ms=value)
    with pytest.raises(MvcError, match="cannot open the metric database"):
        rec.flush()
    assert (rec.pending, rec.dropped) == (2, 0)
    rec.record(decision, latency_ms=3.0, error=0)
    with pytest.raises(MvcError):
        rec.flush()
    assert (rec.pending, rec.dropped) == (3, 1)  # the oldest point went first
    os.rmdir(blocker)
    assert rec.flush() == 3
    assert sorted(MetricsDB.open(st.repo).values(Query("bert", "latency_ms"))) == [2.0, 3.0]
    rec.close()


def test_the_vocabulary_and_the_command_line_do_not_load_the_store(mvc_env, tmp_path) -> None:
    import json
    import subprocess
    import sys

    code = (
        "import json, sys\n"
        "import mvc.metrics, mvc.metrics.model\n"
        "from mvc.cli.main import dispatch\n"
        "sys.argv = ['mvc', '--help']\n"
        "try:\n    dispatch()\nexcept SystemExit:\n    pass\n"
        "heavy = ('sqlite3', 'mvc.metrics.sqlite', 'mvc.metrics.recorder', 'mvc.ops.metrics')\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=mvc_env, capture_output=True, text=True
    )
    assert json.loads(done.stderr.strip().splitlines()[-1]) == []
    import mvc.metrics

    assert "record" in dir(mvc.metrics) and mvc.metrics.Recorder.__name__ == "Recorder"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mvc.metrics.nope  # noqa: B018
