"""What a training run leaves behind, for the trainer that writes it and every command
that reads it: the checkpoint format and its atomic writer, the progressive schedule and
a run's position in it, the networks of a run and its generator loaded back, sample
grids and animations, and the log with its plot.

This room sits below ``train``, ``metrics`` and ``generate``, which all read runs; it
imports only ``models``, ``data`` and the shared atomic writer.
"""

from fastpgan.runs.checkpoint import Checkpoint, RngStates, latest_checkpoint, list_checkpoints
from fastpgan.runs.generator import (
    TrainedGenerator,
    checkpoint_generator,
    initialize_from,
    load_generator,
    load_networks,
    load_trained,
    run_networks,
    run_phases,
)
from fastpgan.runs.pictures import save_animation, save_grid

__all__ = ["Checkpoint", "RngStates", "TrainedGenerator", "checkpoint_generator",
           "initialize_from", "latest_checkpoint", "list_checkpoints", "load_generator",
           "load_networks", "load_trained", "run_networks", "run_phases", "save_animation",
           "save_grid"]
