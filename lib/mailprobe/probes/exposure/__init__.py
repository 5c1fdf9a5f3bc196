"""The exposure probe: which SMTP and NetBIOS/SMB ports of a site's addresses face the world.

``targets`` turns the command line into addresses (with the size limits) and the sanctioned
mailers; ``scan`` is the concurrent connect scan; ``greeting`` reads the banner and EHLO of an
open SMTP port, ``smb`` the dialects an SMB server offers; ``probe`` runs them all inside one
deadline and returns an ``ExposureReport`` (``model``); ``verdict`` turns it into findings.
"""
