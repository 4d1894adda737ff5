"""Shared plumbing, imported by every package and importing none: errors and exit statuses, registries and
flags, pairwise geometry, devices, seeding, run folders, W&B, checkpoints and resume, pictures."""
