"""Spiking image generation: FSVAE with PFA, its layers and metrics."""
