"""SPF: record parsing and lint (RFC 7208 limits), and check_host() evaluation via pyspf."""
