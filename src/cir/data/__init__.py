"""Fact data: the schema and loader, the generated demo world, tokenisation and batching."""
