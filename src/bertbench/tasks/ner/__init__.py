"""Named-entity recognition as BIO token tagging: CLUENER2020 (JSON spans) and CoNLL files (WNUT-17)."""
