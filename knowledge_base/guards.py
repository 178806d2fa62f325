"""Input checks for residents' questions: empty, oversized, binary garbage, and instructions
aimed at the assistant rather than questions about policy."""

from __future__ import annotations

import re
import unicodedata

from assistant.core.errors import InvalidQuestion

_INJECTION_RE = re.compile(
    r"忽略(之前|以上|上面|前面|你的|所有).{0,8}(指令|规则|设定|要求|提示)|无视.{0,6}(规则|指令)|"
    r"系统提示词|system prompt|管理员密码|admin password|越狱|jailbreak|"
    r"ignore (all |any |the |your )?(previous |prior |above )?(instructions|rules|prompt)|"
    r"编一个|编个|瞎编|随便编|你就说|就说是你说的|不用管规定|别管规定|make (it|something|one) up|make up (a|an|the)|"
    r"pretend (you are|to be)|扮演|"
    r"(别人|隔壁|邻居|他|她|王大爷|李大妈|某某).{0,8}(身份证号|电话号码|手机号|电话|住址)",
    re.IGNORECASE,
)


def check_question(text: object, max_chars: int) -> str:
    """Return the cleaned question or raise InvalidQuestion with a resident-friendly message."""
    if not isinstance(text, str):
        raise InvalidQuestion("问题必须是文字。", "The question must be text.")
    cleaned = text.replace("\x00", "").strip()
    if not cleaned:
        raise InvalidQuestion(
            "问题不能为空，请输入您想咨询的内容。", "The question is empty. Please type what you want to ask."
        )
    if len(cleaned) > max_chars:
        raise InvalidQuestion(
            f"问题太长了（{len(cleaned)}个字），请简短地说一说您想问什么（{max_chars}字以内）。",
            f"The question is too long ({len(cleaned)} characters). Please keep it under {max_chars} characters.",
            length=len(cleaned),
            limit=max_chars,
        )
    printable = sum(
        1 for ch in cleaned if unicodedata.category(ch)[0] in "LNPSZ" and ch != "\ufffd" and ch.isprintable()
    )
    if printable / len(cleaned) < 0.8 or not any(unicodedata.category(ch)[0] in "LN" for ch in cleaned):
        raise InvalidQuestion(
            "没有看懂您的问题，里面有无法识别的字符。请用文字重新说一遍。",
            "The question contains unreadable characters. Please type it again in words.",
        )
    return re.sub(r"\s+", " ", cleaned)


def looks_like_injection(text: str) -> bool:
    return bool(_INJECTION_RE.search(text))
