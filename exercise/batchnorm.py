"""BatchNorm with mutable ``batch_stats``: fill in the two TODO blocks.

Run ``python -m grader grade exercise/batchnorm.py`` to check your work.
Read exercise/README.md first: it explains the contract the grader checks.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

NOT_IMPLEMENTED = (
    "not implemented yet: fill in the TODO in {where} (see exercise/README.md)"
)


class MyBatchNorm(nn.Module):
    """Batch normalization over axis 0 of an ``(N, D)`` input.

    Attributes:
        momentum: weight of the old running value in each update.
        eps: added to the variance inside the square root.
    """

    momentum: float = 0.9
    eps: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array, use_running_average: bool) -> jax.Array:
        # TODO 1: parameters. gamma (ones) and beta (zeros), shape (D,), are
        #   trainable, so declare them with self.param(...). They live in the
        #   "params" collection, the only one an optimizer updates.
        #
        # TODO 2: running statistics. running_mean (zeros) and running_var (ones),
        #   shape (D,), are NOT trainable: no gradient should reach them, yet they
        #   change from call to call. Declare them with
        #   self.variable("batch_stats", name, init_fn) and read/write `.value`.
        #   Putting them in params would let an optimizer "train" them.
        #
        # TODO 3: two modes.
        #   use_running_average=False (training): normalize with the mean and the
        #     biased variance (divide by N) of THIS batch, over axis 0 (the batch
        #     axis; over axis 1 it would be LayerNorm). Then update
        #       running = momentum * running + (1 - momentum) * batch_statistic
        #   use_running_average=True (eval): normalize with the running statistics
        #     and change nothing, so a prediction does not depend on the batch.
        #
        # TODO 4: the guard. Module.init runs this forward pass once to create the
        #   variables, with every collection writable. Without a guard, init
        #   silently folds the example batch into the running statistics (no error
        #   in current Flax!). Update only `if not self.is_initializing():`
        #   (mind the parentheses: the bare method is always truthy).
        #
        # Output: gamma * (x - mean) / sqrt(var + eps) + beta
        raise NotImplementedError(NOT_IMPLEMENTED.format(where="MyBatchNorm.__call__"))


def init_and_apply(seed: float, x: jax.Array, use_running_average: float) -> jax.Array:
    """Initialize ``MyBatchNorm`` on ``x``, apply it once, return the output as 1-D.

    Args:
        seed: PRNG seed, given as a float (e.g. 3.0).
        x: input of shape (N, D).
        use_running_average: 0.0 (training) or 1.0 (eval), given as a float.

    Returns:
        The output of the apply step, flattened to N * D values.
    """
    # TODO 5: the init -> split -> apply flow, the way a training loop uses the layer.
    #   a. Initialize the model from a PRNG key made from the seed. The seed arrives
    #      as a float, and JAX only makes keys from integers. Initialize in training
    #      mode: init runs one forward pass to discover every variable.
    #   b. init hands back every collection at once. Keep the trainable ones and the
    #      running statistics apart: they are updated by different mechanisms (an
    #      optimizer vs. your own assignments).
    #   c. Apply in the mode the flag asks for (it is a float: apply wants a bool).
    #      Collections are read-only during apply unless you name them as mutable;
    #      once you do, apply returns the output together with the updated state.
    #   d. Return only the output, as one flat vector of N * D values.
    raise NotImplementedError(NOT_IMPLEMENTED.format(where="init_and_apply"))
