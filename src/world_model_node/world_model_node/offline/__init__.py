"""Offline training of the world model from recorded sessions (``devbot train``).

* :mod:`.dataset`: samples (context frames + actions -> next frame) from rosbag2 sessions, the
  held-out split, lazily decoded and cached frames.
* :mod:`.trainer`: batched training with the online learner's models and losses, checkpoints in
  the online format, exact resume, DistributedDataParallel under ``torchrun``.
* :mod:`.evaluation`: held-out numbers (explained variance, dot position error per action).
* :mod:`.cli`: the ``devbot train`` command.
* :mod:`.synthetic`: dot-world sessions written without ROS (tests, benchmarks, demos).

The submodules import torch; this package itself imports nothing heavy.
"""
