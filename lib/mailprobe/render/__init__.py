"""The report model (:mod:`mailprobe.audit.model`) as text with colours, JSON, and HTML.

Renderers only read the model; they never probe. Colours follow the NST Relay Check: urgent
findings red, warnings orange, good news blue (UNKNOWN purple, not judged grey).
"""
