"""Preparing model inputs: band geometry and aggregation, static soil, soil-water layers, bias correction, scenarios, features, windows."""
