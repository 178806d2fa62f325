"""Spoken questions: which reading of what whisper heard reaches the dialogue engine."""

from __future__ import annotations

from assistant.speech.correction import AcousticCheck, Reading, post_correct

HEARD = "退休了还要接着教医保吗"  # whisper's first transcript: 教 (teach) for 交 (pay)
MEANT = "退休了还要接着交医保吗"  # its runner-up wrote 交 as it is


class _Decoder:
    """The sound-alike decoder as post_correct sees it: each transcript's readings, best first.
    Reaching the other verb from either transcript is one same-sound change (cost 3); the
    language model likes 交医保 a little better."""

    def readings(self, text: str, n: int) -> list[Reading]:
        language = {HEARD: -10.0, MEANT: -9.0}
        other = MEANT if text == HEARD else HEARD
        return sorted([Reading(text, language[text], 0.0), Reading(other, language[other], 3.0)],
                      key=lambda r: r.score, reverse=True)[:n]


def _audio_leaning_to_the_first(texts: list[str]) -> list[float]:
    # Whisper fits its own first transcript a little better: both verbs sound jiao.
    return [0.0 if text == HEARD else -2.0 for text in texts]


def test_a_reading_a_runner_up_wrote_costs_nothing_to_reach():
    """交医保 from the runner-up is whisper's own words: its language score wins it, though
    re-reading the first transcript into it would have paid a change."""
    check = AcousticCheck(_audio_leaning_to_the_first, alternatives=(MEANT,))
    assert post_correct(HEARD, [], None, _Decoder(), check) == MEANT


def test_without_the_runner_up_the_change_still_pays_its_cost():
    # From the first transcript alone, 交 is a change the audio does not bear out: 教 stays.
    assert post_correct(HEARD, [], None, _Decoder(), AcousticCheck(_audio_leaning_to_the_first)) == HEARD


def test_the_order_the_transcripts_come_in_does_not_decide():
    """Whichever transcript is first, each reading counts at its cheapest."""
    check = AcousticCheck(lambda texts: [0.0 if t == MEANT else -2.0 for t in texts], alternatives=(HEARD,))
    assert post_correct(MEANT, [], None, _Decoder(), check) == MEANT
