"""Reading a file someone uploaded without letting it hurt the server: each file is read (parsed,
front matter checked) in a child process of its own, which sets its own limits before it reads
anything — CPU seconds and memory through `resource`, and the parent's clock through
`subprocess.run(timeout=…)`, which kills it. A YAML bomb, a PDF whose streams inflate to gigabytes,
a Word file of endless paragraphs: each ends as an `IngestError` naming the file and the limit it
reached, in bounded time, while the server keeps answering residents.

The child prints one JSON object: the document's front-matter fields and body, or the error. The
parent checks the fields again (`build_meta`) rather than trusting what the child said."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from assistant.core.domain import Document
from assistant.core.errors import IngestError

# The folder holding this checkout's packages: the child imports the same code as the parent.
_PACKAGES_ROOT = str(Path(__file__).resolve().parent.parent)


@dataclass(frozen=True)
class ReadLimits:
    cpu_s: int = 20
    wall_s: float = 30.0
    memory_mb: int = 1024


DEFAULT_LIMITS = ReadLimits()


LOAD_FILE = "knowledge_base.loaders:load_file"


def read_isolated(path: Path, defaults: dict[str, Any] | None = None, limits: ReadLimits = DEFAULT_LIMITS,
                  loader: str = LOAD_FILE) -> Document:
    """`load_file(path, defaults)` in a child process within `limits`. `loader` names the reading
    function as "module:function" (another one only in tests of the limits themselves)."""
    from knowledge_base.loaders import build_meta  # noqa: PLC0415 - the parent's check of the child's fields

    request = {"path": str(path), "defaults": {k: _jsonable(v) for k, v in (defaults or {}).items()},
               "cpu_s": limits.cpu_s, "memory_mb": limits.memory_mb, "loader": loader}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_PACKAGES_ROOT, os.environ.get("PYTHONPATH")])),
           # One thread for any numeric library: the memory limit counts each thread's arena.
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-m", "knowledge_base.isolated"], input=json.dumps(request),
                              capture_output=True, text=True, timeout=limits.wall_s, env=env, check=False)
    except subprocess.TimeoutExpired as exc:
        raise _too_much(path, f"{limits.wall_s:g} 秒", f"{limits.wall_s:g} s") from exc
    if done.returncode in (-signal.SIGXCPU, -signal.SIGKILL) or "MemoryError" in done.stderr[-2000:]:
        elapsed = time.monotonic() - started
        if done.returncode == -signal.SIGXCPU or elapsed >= limits.cpu_s:
            raise _too_much(path, f"{limits.cpu_s} 秒计算时间", f"{limits.cpu_s} CPU seconds")
        raise _too_much(path, f"{limits.memory_mb} MB 内存", f"{limits.memory_mb} MB of memory")
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise _unreadable(path) from exc
    if "error_zh" in result:
        raise IngestError(result["error_zh"], result.get("error_en"))
    return Document(meta=build_meta(result["fields"], path), body=result["body"], path=str(path))


def _too_much(path: Path, limit_zh: str, limit_en: str) -> IngestError:
    return IngestError(f"文件 {path.name} 读取时超过了 {limit_zh} 的上限"
                       "（文件可能过于复杂、被刻意构造或已损坏），没有导入",
                       f"{path.name} went past the limit of {limit_en} while being read (too complex, crafted or "
                       f"corrupt); not imported", limit=limit_en)


def _unreadable(path: Path) -> IngestError:
    return IngestError(f"文件 {path.name} 无法读取（已损坏或格式不受支持）",
                       f"{path.name} could not be read (corrupt or unsupported)")


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


def _limit_self(cpu_s: int, memory_mb: int) -> None:
    import resource  # noqa: PLC0415 - POSIX only, and only the child needs it

    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    memory = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # reading writes nothing
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _child() -> int:
    request = json.loads(sys.stdin.read())
    _limit_self(int(request["cpu_s"]), int(request["memory_mb"]))
    import importlib  # noqa: PLC0415 - the child's own imports come after its limits

    from knowledge_base.loaders import front_matter  # noqa: PLC0415 - after the limits are set

    module, function = str(request.get("loader") or LOAD_FILE).split(":")
    load_file = getattr(importlib.import_module(module), function)
    path = Path(request["path"])
    try:
        doc = load_file(path, defaults=request["defaults"])
        fields = {k: _jsonable(v) for k, v in front_matter(doc.meta).items()}
        out = {"fields": fields, "body": doc.body}
    except IngestError as exc:
        out = {"error_zh": exc.message_zh, "error_en": exc.message_en}
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a crafted file makes a parser raise is "unreadable"
        failure = _unreadable(path)
        out = {"error_zh": failure.message_zh, "error_en": f"{failure.message_en} ({type(exc).__name__})"}
    sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_child())
