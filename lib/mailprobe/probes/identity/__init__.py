"""The identity probe: reverse DNS, FCrDNS, banner and EHLO names, STARTTLS and the certificate.

``probe`` gathers the facts (``model``), ``assess`` turns them into findings; ``names`` holds the
name comparisons and the generic-PTR heuristics both use.
"""
