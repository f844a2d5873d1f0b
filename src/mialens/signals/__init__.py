"""Signals: model outputs on query sets and per-sample statistics of them."""
