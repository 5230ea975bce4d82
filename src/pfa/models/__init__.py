"""Spiking network families, one file each."""
