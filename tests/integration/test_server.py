"""`linli serve` as a real server process, and `linli chat` as a real interactive process."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx

from tests.conftest import free_port
from tests.integration.conftest import linli_env


def test_serve_answers_over_http(small_index_dir):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "assistant.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=linli_env(small_index_dir), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"{base}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read().decode()
                assert time.monotonic() < deadline, "server did not start within 60 s"
                time.sleep(0.3)
        assert health.json()["index_built"] is True
        answer = httpx.post(f"{base}/api/v1/ask", json={"question": "失业登记要带什么材料"}, timeout=30).json()
        assert answer["refused"] is False and answer["citations"][0]["doc_id"] == "unemployment"
        bad = httpx.post(f"{base}/api/v1/ask", json={"question": ""}, timeout=30)
        assert bad.status_code == 422 and "不能为空" in bad.json()["message"]
        assert "高龄补贴" in httpx.get(f"{base}/openapi.json", timeout=10).text
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_chat_loop(small_index_dir):
    result = subprocess.run(
        [sys.executable, "-m", "assistant.cli", "chat"],
        input="失业登记要带什么材料\n\n   \n在哪办?\n我要转人工\n退出\n",
        env=linli_env(small_index_dir), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "身份证" in result.stdout and "[1]" in result.stdout
    assert "公共就业服务机构" in result.stdout  # the follow-up kept the topic
    assert "编号 T" in result.stdout  # the hand-off opened a ticket
    assert result.stdout.strip().endswith("再见！")
