"""The DNS blacklist probe: curated zones (data), answer decoding, the look-up fan-out."""
