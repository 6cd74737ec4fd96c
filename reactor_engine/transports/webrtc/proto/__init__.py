"""The v1 wire schema and its generated module (regenerate with `make proto`)."""
