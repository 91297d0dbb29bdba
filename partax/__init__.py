"""partax: the convex partition that a ReLU network draws on its input and latent spaces.

The public face: networks (:mod:`partax.nets`), activation codes and region keys
(:mod:`partax.codes`), region tables (:mod:`partax.tables`), input sources
(:mod:`partax.sources`) and the streaming partition engine (:mod:`partax.partition`).
"""

from partax import bounds
from partax import datasets
from partax import distributed
from partax import geometry
from partax import info
from partax import plots
from partax import sources
from partax import trace
from partax import train
from partax.codes import Codes
from partax.codes import HashCollisionError
from partax.codes import codes
from partax.codes import region_ids
from partax.geometry import Box
from partax.nets import Net
from partax.nets import load_net
from partax.nets import mlp
from partax.nets import save_net
from partax.nets import stack_nets
from partax.partition import Partition
from partax.partition import load_partition
from partax.partition import partition
from partax.tables import RegionTable
from partax.trace import Tracer
from partax.trace import load_trace

__version__ = "0.1.0"

__all__ = [
    "Box",
    "Codes",
    "HashCollisionError",
    "Net",
    "Partition",
    "RegionTable",
    "Tracer",
    "bounds",
    "codes",
    "datasets",
    "distributed",
    "geometry",
    "info",
    "load_net",
    "load_partition",
    "load_trace",
    "mlp",
    "partition",
    "plots",
    "region_ids",
    "save_net",
    "sources",
    "stack_nets",
    "trace",
    "train",
]
