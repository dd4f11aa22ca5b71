"""Analysis layer: response outcomes and predictions, typical-patient arms, virtual populations, virtual
trials and scenarios, synergy, calibration against reported summaries, plausibility checks."""
