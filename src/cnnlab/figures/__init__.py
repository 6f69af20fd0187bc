"""Figures drawn by more than one part of cnnlab (training, eval, inspect, reports); matplotlib without pyplot."""
