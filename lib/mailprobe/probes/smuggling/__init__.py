"""SMTP smuggling (CVE-2023-51764/51765/51766): does the server end DATA at a non-standard
end-of-data sequence? ``catalogue`` (the sequences as data), ``verdict`` (pure rules),
``runner`` (the SMTP sessions), ``advice`` (which MTA, what to change)."""
