"""The relay probe: the catalogue of attempts (data), the runner that plays them, the verdict."""
