"""How residents say yes, no, cancel and change — the few patterns that the handlers decide on
before any model is asked. Intent examples and keyword rules live in intents/data/intents.yaml."""

from __future__ import annotations

import re

from knowledge_base.text import detect_language

CANCEL_RE = re.compile(
    r"^(算了吧?|取消(登记|申请)?|不办了|不弄了|不要了|不用了|退出登记|"
    r"cancel|never ?mind|forget it)(?=$|[，,。.!！?？\s])", re.I)
CONFIRM_RE = re.compile(
    r"^(确认|确定|对|对的|没问题|是的|可以|好的?|提交|confirm|yes|ok|correct)[。!！.]*$", re.I)
CORRECT_RE = re.compile(r"^(?:修改|改一下|改|更正|change|correct)\s*(.+)$", re.I)
AFFIRMATIVE_RE = re.compile(
    r"^(是|是的|对|对的|嗯|好|好的|行|紧急|紧急求助|需要|要|救命|"
    r"yes|yeah|please|emergency( help)?)[。!！.吧啊]*$", re.I)
RATING_RE = re.compile(r"^\s*([1-5])\s*(分|星|颗星|stars?)?\s*[。.!！]?\s*$", re.I)
FRUSTRATION_RE = re.compile(
    r"没用|听不懂|答非所问|不对|答错|什么玩意|废物|useless|not helpful|wrong answer|doesn'?t help", re.I)
QUESTION_RE = re.compile(
    r"[？?]|吗|怎么|咋|多少|哪|什么|啥|能不能|可不可以|\b(what|how|can i|where|when|is it)\b", re.I)
FOLLOWUP_START_RE = re.compile(r"^(那|那么|还有|另外|then|and|what about|how about)\s*", re.I)
_FOLLOWUP_RE = re.compile(
    r"呢[？?]?$|^(需要|要)?(带|准备)(什么|啥|哪些)(材料|东西|证件)?[？?]?$|"
    r"^(在|去|到)(哪|哪里|哪儿)(办|申请|登记)?[？?]?$|"
    r"^(要|需要)?(多久|多长时间|几天)[？?]?$|^(怎么|咋)(办|申请|弄)[？?]?$|"
    r"^(what|which) (documents|papers)|^where\b|^how long",
    re.I,
)
DISPUTE_RE = re.compile(r"不服|有异议|不同意|不认可|申诉|不公平|凭什么|disagree|appeal|unfair", re.I)
STATUS_QUERY_RE = re.compile(
    r"(申请|办的|提交的|登记的).{0,8}(到哪|进度|怎么样了?|结果|批了|批下来|状态)|到哪一步|办到哪|审核.{0,3}(到哪|怎么样)|"
    r"status of my application|my application status|where is my application", re.I)


def looks_like_followup(text: str) -> bool:
    """A short fragment that only makes sense after an earlier question: 那80岁呢, 在哪办."""
    if len(text) > 20 if detect_language(text) == "zh" else len(text.split()) > 8:
        return False
    return bool(FOLLOWUP_START_RE.match(text) or _FOLLOWUP_RE.search(text))


def without_field_label(request: str, labels: tuple[str, ...]) -> str:
    """The value in a correction ("修改 电话 13812345678" → "13812345678")."""
    value = request
    for label in labels:
        value = re.sub(re.escape(label), "", value, flags=re.I)
    return value.strip(" ：:为是成改")
