"""Shared plumbing: errors, registries, devices, seeding, run folders, logging, checkpoints."""
