"""Measuring representations: feature extraction and its cache, probing, RIS and its bootstrap, downstream evaluation."""
