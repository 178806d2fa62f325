"""Speech input: audio decoding with limits, offline transcription, and domain post-correction."""
