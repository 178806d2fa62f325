"""The `linli` command line as a resident-facing tool and an admin tool. What a command does is
checked in-process (typer's runner on the same app and environment: `run_linli_in_process`), as
two dozen new processes cost two to four minutes of a 2-core machine in Python and model start-up;
the process itself, a conversation's thread carried on by a new `linli say` process, is checked
with a real one."""

from __future__ import annotations

import json
import os
import subprocess

from tests.integration.conftest import linli_env, run_linli, run_linli_in_process


def _one_json(stdout: str) -> dict:
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected exactly one JSON line, got: {stdout!r}"
    return json.loads(lines[0])


def test_ask_json_computed_answer(small_index_dir):
    result = run_linli_in_process(small_index_dir, "ask", "我奶奶今年92了，每个月能领多少高龄补贴？", "--json")
    assert result.returncode == 0, result.stderr
    payload = _one_json(result.stdout)
    assert set(payload) == {"answer", "refused", "confidence", "citations"}
    assert payload["refused"] is False
    assert "500" in payload["answer"] and "[1]" in payload["answer"]
    citation = payload["citations"][0]
    assert set(citation) == {"doc_id", "title", "chunk_id", "text"}
    assert citation["doc_id"] == "allowance" and "500" in citation["text"]


def test_ask_json_refuses_an_amount_the_table_lacks(small_index_dir):
    payload = _one_json(run_linli_in_process(small_index_dir, "ask", "我爸85岁了高龄津贴一个月多少钱", "--json").stdout)
    assert payload["refused"] is True
    assert "80至89" in payload["answer"] and "工作人员" in payload["answer"]
    assert not any(ch.isdigit() for ch in payload["answer"].replace("80至89", ""))


def test_ask_json_extractive_answer_with_citations(small_index_dir):
    payload = _one_json(run_linli_in_process(small_index_dir, "ask", "失业了去哪登记，要带什么？", "--json").stdout)
    assert payload["refused"] is False
    assert "身份证" in payload["answer"] or "公共就业服务机构" in payload["answer"]
    assert payload["citations"] and payload["citations"][0]["doc_id"] == "unemployment"


def test_search_json_shape(small_index_dir):
    result = run_linli_in_process(small_index_dir, "search", "失业登记带什么材料", "--k", "3", "--json")
    assert result.returncode == 0, result.stderr
    hits = _one_json(result.stdout)["hits"]
    assert 1 <= len(hits) <= 3
    assert set(hits[0]) == {"doc_id", "chunk_id", "score", "title", "text"}
    assert hits[0]["doc_id"] == "unemployment"
    assert hits == sorted(hits, key=lambda h: -h["score"])


def test_bad_questions_exit_nonzero_with_chinese_messages(small_index_dir):
    for question, words in (("   ", "不能为空"), ("问" * 20000, "太长"), ("\x01\x02\x03\x04\x05\x06\x07", "无法识别")):
        result = run_linli_in_process(small_index_dir, "ask", question, "--json")
        assert result.returncode != 0
        payload = _one_json(result.stdout)
        assert words in payload["message"], payload


def test_kb_commands(small_index_dir, tmp_path):
    listed = _one_json(run_linli_in_process(small_index_dir, "kb", "list", "--json").stdout)["documents"]
    assert {d["doc_id"] for d in listed} == {"allowance", "unemployment"}
    shown = _one_json(run_linli_in_process(small_index_dir, "kb", "show", "unemployment", "--json").stdout)
    assert shown["title"] == "失业登记" and shown["chunks"]
    missing = run_linli_in_process(small_index_dir, "kb", "show", "no-such-doc", "--json")
    assert missing.returncode != 0 and "no-such-doc" in missing.stdout
    assert run_linli_in_process(small_index_dir, "kb", "remove", "no-such-doc").returncode != 0
    broken = tmp_path / "broken.md"
    broken.write_text("---\nid: [\n---\n正文", encoding="utf-8")
    result = run_linli_in_process(small_index_dir, "kb", "add", str(broken))
    assert result.returncode != 0 and "元数据" in result.stderr
    after = _one_json(run_linli_in_process(small_index_dir, "kb", "list", "--json").stdout)["documents"]
    assert after == listed


def test_say_json_keeps_the_thread_across_processes(small_index_dir):
    # The first message in this process, the follow-up in a new `linli` process: the thread is
    # what the first stored, not anything a process kept.
    first = run_linli_in_process(small_index_dir, "say", "--session", "cli-thread",
                                 "我奶奶今年92了，每个月能领多少高龄补贴？", "--json")
    assert first.returncode == 0, first.stderr
    body = _one_json(first.stdout)
    assert body["reply_type"] == "answer" and "500元" in body["text"] and body["session_id"] == "cli-thread"
    second = run_linli(small_index_dir, "say", "--session", "cli-thread", "那80岁呢?", "--json")
    follow = _one_json(second.stdout)
    assert follow["reply_type"] == "refusal" and "80至89" in follow["text"]
    # Replayed: both questions, both replies, and what each reply changed in the state.
    shown = run_linli_in_process(small_index_dir, "conversation", "show", "cli-thread")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert [ln.split()[1] for ln in lines if ln.startswith("#")] == ["resident", "linli", "resident", "linli"]
    assert "+ last_question = '我奶奶今年92了，每个月能领多少高龄补贴？'" in shown.stdout
    assert "~ last_question: '我奶奶今年92了，每个月能领多少高龄补贴？' → '那80岁呢?'" in shown.stdout
    assert run_linli_in_process(small_index_dir, "conversation", "show", "no-such-session").returncode == 1


def test_say_json_bad_text_is_still_one_json_object(small_index_dir):
    result = run_linli_in_process(small_index_dir, "say", "--session", "cli-empty", "   ", "--json")
    assert result.returncode == 0, result.stderr
    assert _one_json(result.stdout)["reply_type"] == "clarify"


def test_users_add_list_and_errors(small_index_dir, tmp_path):
    env = dict(linli_env(small_index_dir), LINLI_DATA_DIR=str(tmp_path / "var"),
               LINLI_INDEX_DIR=str(small_index_dir / "var" / "index"), WORKER_PASSWORD="a-long-password")

    def linli(*args: str) -> subprocess.CompletedProcess:
        return run_linli_in_process(small_index_dir, *args, env=env)

    added = linli("users", "add", "wang", "--role", "worker", "--centre", "centre-a",
                  "--password-env", "WORKER_PASSWORD")
    assert added.returncode == 0, added.stderr
    assert "wang\tworker\tcentre-a" in linli("users", "list").stdout
    again = linli("users", "add", "wang", "--password-env", "WORKER_PASSWORD")
    assert again.returncode == 2 and "已存在" in again.stdout
    env["SHORT"] = "short"
    weak = linli("users", "add", "li", "--password-env", "SHORT")
    assert weak.returncode == 2 and "至少10位" in weak.stdout
    assert "a-long-password" not in (tmp_path / "var" / "linli.sqlite").read_bytes().decode("latin-1")
    assert os.path.exists(tmp_path / "var" / "linli.sqlite")
