"""Corpora, MDS conversion, streaming datasets and MLM batching."""
