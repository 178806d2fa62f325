"""The cluster launcher (assistant/cluster.py, `make cluster`): a 2-replica, 1-worker cluster on
PostgreSQL and Redis behind a real HAProxy answers through HAProxy from both replicas, carries a
resident's conversation, takes a killed replica out and back, and leaves no process behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid

import httpx
import pytest

from assistant.cluster import Cluster, ClusterConfig, drop_database
from tests.conftest import POSTGRES_ADMIN_URL, SHARED_CACHE, _postgres_unavailable_reason

pytestmark = pytest.mark.integration


def _redis_missing() -> str | None:
    if shutil.which("redis-server"):
        return None
    cli = shutil.which("redis-cli")
    if cli and subprocess.run([cli, "ping"], capture_output=True, text=True, timeout=5,
                              check=False).stdout.strip() == "PONG":
        return None
    return "Redis not reachable (redis-cli ping) and redis-server not installed (apt-get install -y redis-server)"


@pytest.fixture(scope="module")
def cluster_needs() -> str:
    """The PostgreSQL server the cluster may use (its database part is ignored), or a skip with the reason."""
    for reason in (None if shutil.which("haproxy") else "haproxy not installed (apt-get install -y haproxy)",
                   _postgres_unavailable_reason(), _redis_missing()):
        if reason:
            print(f"\nskipped: {reason}")
            pytest.skip(reason)
    return POSTGRES_ADMIN_URL


def test_two_replicas_behind_haproxy_and_nothing_left_after_stop(cluster_needs, small_index_dir, tmp_path):
    database = f"linli_cluster_test_{uuid.uuid4().hex[:8]}"
    no_statutes = tmp_path / "no-statutes.jsonl"
    no_statutes.write_text("")
    config = ClusterConfig(
        replicas=2, workers=1, port=0, database=database, postgres_url=cluster_needs, fresh_database=True,
        redis_db=13, root=tmp_path / "cluster", ready_timeout_s=240,
        # The small test corpus (tests/integration/conftest.py) and the shared embedding cache.
        extra_env={"LINLI_CORPUS_DIRS": json.dumps([str(small_index_dir / "corpus")]),
                   "LINLI_LAW_CORPUS": str(no_statutes), "LINLI_EMBEDDING_CACHE": str(SHARED_CACHE)})
    cluster = Cluster(config, echo=print)
    started = time.monotonic()
    try:
        cluster.start()
        print(f"cluster up in {time.monotonic() - started:.1f} s at {cluster.url}; health check {cluster.check_path}")
        assert set(cluster.pids) >= {"replica-1", "replica-2", "worker-1", "haproxy", "sandbox"}
        # ("UP 1/2": up, one check failed since, as a check may on a busy 2-core machine.)
        assert {name: state.split()[0] for name, state in cluster.backend_status().items()} == \
            {"replica-1": "UP", "replica-2": "UP"}

        with httpx.Client(base_url=cluster.url, timeout=30) as client:
            seen = [client.get(cluster.check_path).headers.get("X-Linli-Replica") for _ in range(6)]
            assert set(seen) == {"replica-1", "replica-2"}, seen
            assert seen[0] != seen[1], f"round-robin alternates: {seen}"

            # A resident's page session is minted on one replica and used on the other: the
            # conversation lives in PostgreSQL, not in a process.
            session = client.post("/api/v1/sessions", json={"channel": "chat"})
            assert session.status_code == 201, session.text
            token = session.json()["session_token"]
            replies = [client.post("/api/v1/messages", headers={"X-Session-Token": token},
                                   json={"text": text}) for text in ("你好", "失业登记需要带什么材料？")]
            assert [r.status_code for r in replies] == [200, 200], [r.text for r in replies]
            assert {r.headers["X-Linli-Replica"] for r in replies} == {"replica-1", "replica-2"}

            # kill -9 one replica: HAProxy takes it out, and every request still gets an answer.
            killed_at = time.monotonic()
            cluster.kill("replica-1", signal.SIGKILL)
            statuses = [client.get(cluster.check_path).status_code for _ in range(10)]
            cluster.wait_backend({"replica-1": "DOWN"}, timeout=10)
            print(f"replica-1 killed: HAProxy reported it DOWN after {time.monotonic() - killed_at:.1f} s")
            assert statuses == [200] * 10, statuses
            cluster.start_process("replica-1")
            cluster.wait_backend({"replica-1": "UP"}, timeout=15)

        groups = dict(cluster.pids)
        assert cluster.group_members(), "the children are running"
    finally:
        stopping = time.monotonic()
        cluster.stop()
        print(f"stopped in {time.monotonic() - stopping:.1f} s")
        drop_database(cluster_needs, database)

    assert cluster.group_members() == []
    assert cluster.pids == {}
    for name, pid in groups.items():
        assert not cluster.alive(name)
        with pytest.raises(ProcessLookupError):  # nothing left in the child's process group
            os.killpg(pid, 0)
