"""Human evaluation: studies in SQLite, a rating page, Label Studio and CSV exchange, aggregates."""
