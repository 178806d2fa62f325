"""The live check of whisper's recording (eval/asr_recorded.py) on made-up comparisons: it must
let another CPU's int8 noise through and stop a recording made with another decoding."""

from __future__ import annotations

from assistant.speech.transcriber import Transcript
from eval.asr_recorded import LiveComparison


def test_the_live_check_tells_another_cpu_from_another_decoding():
    """KERNEL_TOLERANCE on made-up comparisons: noise like another CPU's passes, a reading scored
    otherwise or words heard otherwise do not."""
    readings = ["交职工医保", "教职工医保", "交职工医保部", "教职工医保部", "脚职工医保", "交职工一保", "缴职工医保",
                "交织工医保"]
    heard = dict(zip(readings, [-17.4, -17.1, -20.3, -20.5, -24.0, -26.2, -18.9, -29.0], strict=True))
    recorded = {"raw_text": "能交职工医保吗", "language": "zh", "heard": heard}

    def comparing(text: str, fits: list[float], language: str = "zh") -> LiveComparison:
        live = dict(zip(readings, fits, strict=True))
        comparison = LiveComparison()
        comparison.add("clip", recorded, Transcript(text, language, 1.0, 0.1, lambda texts: [live[t] for t in texts]))
        return comparison

    # Another CPU: fits moved by up to 1.2 nats, the near-tie at the top swapped (as sp-zh-a-028 was).
    assert not comparing("能交职工医保吗", [-17.0, -17.3, -19.1, -21.0, -23.2, -26.9, -19.4, -28.1]).problems()
    # A scoring change: fits far off, the readings reordered.
    assert comparing("能交职工医保吗", [-25.0, -12.0, -9.0, -30.0, -11.0, -14.0, -31.0, -16.0]).problems()
    # One reading ahead of one it trailed by more than the margin, the rest in place.
    swapped = comparing("能交职工医保吗", [-17.4, -17.1, -20.3, -20.5, -24.0, -26.2, -18.9, -23.0])
    assert swapped.swapped and swapped.problems()
    # Other words, or another language.
    assert comparing("能缴纳城乡居民医保吗", list(heard.values())).problems()
    assert comparing("can I pay", list(heard.values()), language="en").problems()
