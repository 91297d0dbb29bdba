"""partax: the convex partition that a ReLU network draws on its input and latent spaces.

The public face: networks (:mod:`partax.nets`), activation codes and region keys
(:mod:`partax.coding`), region tables (:mod:`partax.tables`), input sources
(:mod:`partax.sources`) and the streaming partition engine (:mod:`partax.engine`).
"""

from partax import bounds
from partax import compression
from partax import counting
from partax import datasets
from partax import density
from partax import distributed
from partax import geometry
from partax import info
from partax import plots
from partax import sources
from partax import stability
from partax import trace
from partax import train
from partax import tropical
from partax.coding import Codes
from partax.coding import HashCollisionError
from partax.coding import codes
from partax.coding import region_ids
from partax.compression import compress
from partax.compression import verify_equivalent
from partax.counting import count_regions
from partax.counting import parity_lower_bound
from partax.geometry import Box
from partax.nets import Net
from partax.nets import load_net
from partax.nets import mlp
from partax.nets import save_net
from partax.nets import stack_nets
from partax.engine import Partition
from partax.engine import load_partition
from partax.engine import partition
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
    "compress",
    "compression",
    "count_regions",
    "counting",
    "datasets",
    "density",
    "distributed",
    "geometry",
    "info",
    "load_net",
    "load_partition",
    "load_trace",
    "mlp",
    "parity_lower_bound",
    "partition",
    "plots",
    "region_ids",
    "save_net",
    "sources",
    "stability",
    "stack_nets",
    "trace",
    "train",
    "tropical",
    "verify_equivalent",
]
