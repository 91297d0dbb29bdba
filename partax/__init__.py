"""partax: the convex partition that a ReLU network draws on its input and latent spaces."""

from partax.nets import Net
from partax.nets import load_net
from partax.nets import mlp
from partax.nets import save_net
from partax.nets import stack_nets

__version__ = "0.1.0"

__all__ = [
    "Net",
    "load_net",
    "mlp",
    "save_net",
    "stack_nets",
]
