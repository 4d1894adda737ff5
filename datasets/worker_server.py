"""Imported by multiprocessing's fork server alone, before it forks any DataLoader worker (datasets/workers.py).

It makes the server ignore SIGTERM, as the workers do (SIGINT it ignores already): a stop signal sent to
the whole job (SLURM, a process group) must not end the workers' parent while the run finishes its step,
since each worker quits when its parent ends. It then imports the modules whose objects the workers
unpickle (the datasets and their transforms), so that forking a worker costs no import; the server has
imported the main script before (embed.py brings the inference image lists). Nothing else imports this
module.
"""
import signal

signal.signal(signal.SIGTERM, signal.SIG_IGN)

import datasets.loading  # noqa: E402,F401
