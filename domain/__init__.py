"""Pure regime rules: CQC ratings, entry and exit rules, due-date arithmetic. No I/O, no clock."""
