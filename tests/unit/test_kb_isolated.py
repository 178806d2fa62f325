"""Uploaded files are read in a child process with CPU, memory and clock limits
(knowledge_base/isolated.py): the bombs of tests/attacks/files.py each end as a clear refusal in
bounded time, and an ordinary file reads exactly as it does in the server's own process. The
seconds each took are printed (never asserted)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from assistant.core.errors import IngestError
from knowledge_base.isolated import ReadLimits, read_isolated
from knowledge_base.loaders import load_file
from tests.attacks import files

# Low limits keep the suite quick; the server's own are in KbAdminSettings (20 CPU s, 30 s, 1 GB).
LIMITS = ReadLimits(cpu_s=8, wall_s=15.0, memory_mb=512)
DEFAULTS = {"region": "karamay", "category": "elderly_care"}


def _read(tmp_path: Path, name: str, data: bytes) -> tuple[Path, float]:
    path = tmp_path / name
    path.write_bytes(data)
    return path, time.monotonic()


def test_an_ordinary_file_reads_as_in_process(tmp_path):
    path = Path(__file__).resolve().parents[2] / "knowledge_base" / "corpus" / "zh" / "kmy-elderly-allowance.md"
    started = time.monotonic()
    isolated = read_isolated(path, None, LIMITS)
    print(f"\nordinary markdown file: {time.monotonic() - started:.2f} s in a child process")
    assert isolated.meta == load_file(path).meta and isolated.body == load_file(path).body


@pytest.mark.parametrize(("name", "build", "said"), [
    ("yaml-alias-bomb.md", files.yaml_alias_bomb, "别名"),
    ("bad-benefit-table.md", files.bad_benefit_table, "rows[0].min"),
    ("deep-yaml.md", files.deep_yaml, "元数据"),
    ("docx-zip-bomb.docx", lambda: files.docx_zip_bomb(600), "512 MB 内存"),
    ("pdf-stream-bomb.pdf", files.pdf_stream_bomb, "pdf-stream-bomb.pdf"),
])
def test_each_bomb_is_refused_in_bounded_time(tmp_path, name, build, said):
    path, started = _read(tmp_path, name, build())
    with pytest.raises(IngestError) as refused:
        read_isolated(path, DEFAULTS, LIMITS)
    print(f"\n{name} ({path.stat().st_size:,} bytes): refused in {time.monotonic() - started:.2f} s: "
          f"{refused.value.message_zh}")
    assert said in refused.value.message_zh and path.name in refused.value.message_zh


def test_endless_work_is_stopped_by_the_cpu_limit(tmp_path):
    """A file whose reading never ends (standing in for the next parser bug) is killed at the limit."""
    path, started = _read(tmp_path, "slow.md", b"---\n" + files.FRONT_MATTER.format(doc_id="slow", title="t").encode()
                          + b"---\nbody\n")
    with pytest.raises(IngestError) as refused:
        read_isolated(path, DEFAULTS, ReadLimits(cpu_s=1, wall_s=20.0, memory_mb=512),
                      loader="tests.unit.test_kb_isolated:_spin")
    assert "1 秒计算时间" in refused.value.message_zh
    assert time.monotonic() - started < 20  # the CPU limit, not the clock, ended it


def test_a_hung_reader_is_stopped_by_the_clock(tmp_path):
    path, _started = _read(tmp_path, "hang.md", b"x")
    with pytest.raises(IngestError) as refused:
        read_isolated(path, DEFAULTS, ReadLimits(cpu_s=30, wall_s=2.0, memory_mb=512),
                      loader="tests.unit.test_kb_isolated:_sleep")
    assert "2 秒" in refused.value.message_zh


def test_many_tiny_paragraphs_read_in_linear_time(tmp_path):
    """Issue 28, hole 15: 10,000 one-character paragraphs held an upload for 20 s."""
    path, started = _read(tmp_path, "tiny.docx", files.docx_of_tiny_paragraphs(15_000))
    doc = read_isolated(path, DEFAULTS, LIMITS)
    print(f"\n15,000-paragraph .docx ({path.stat().st_size:,} bytes): {time.monotonic() - started:.2f} s")
    assert doc.body.count("字") == 15_000


def _spin(_path, defaults=None):
    while True:
        pass


def _sleep(_path, defaults=None):
    time.sleep(60)
