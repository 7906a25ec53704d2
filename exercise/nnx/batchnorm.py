"""BatchNorm in Flax NNX, with running statistics as ``nnx.BatchStat``: fill in the TODOs.

Run ``python -m grader grade exercise/nnx/batchnorm.py --exercise batchnorm_nnx`` to check your work.
Read exercise/nnx/README.md first: it explains the contract the grader checks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

NOT_IMPLEMENTED = (
    "not implemented yet: fill in the TODO in {where} (see exercise/nnx/README.md)"
)


class MyBatchNorm(nnx.Module):
    """Batch normalization over axis 0 of an ``(N, D)`` input, ``D = num_features``.

    Attributes:
        gamma, beta: trainable scale and shift, shape ``(num_features,)``.
        running_mean, running_var: running statistics, shape ``(num_features,)``.
        momentum: weight of the old running value in each update.
        epsilon: added to the variance inside the square root.
        use_running_average: False (training) after construction; ``model.eval()``
            sets it to True and ``model.train()`` back to False.
    """

    def __init__(self, num_features: int, *, momentum: float = 0.9, epsilon: float = 1e-5, rngs: nnx.Rngs):
        # TODO 1: parameters. gamma (ones) and beta (zeros), shape (num_features,),
        #   are trainable: wrap them in nnx.Param(...). An optimizer is built over
        #   the Params of a model (nnx.Optimizer(model, tx, wrt=nnx.Param)), so the
        #   Variable type IS the declaration "train this".
        #
        # TODO 2: running statistics. running_mean (zeros) and running_var (ones),
        #   shape (num_features,), are NOT trainable, yet they change from call to
        #   call. Wrap them in nnx.BatchStat(...): a Variable, so that nnx.split /
        #   nnx.merge / nnx.jit carry it along with the model, but not a Param, so
        #   that an optimizer over nnx.Param never touches it. As nnx.Param they
        #   would be handed to the optimizer with the weights: given gradients and
        #   optimizer state, pulled towards zero by weight decay, and moved by
        #   gradient descent wherever a loss reads them (any loss computed in eval
        #   mode). As bare arrays they are no Variable at all, and
        #   nnx.split(model, nnx.Param, nnx.BatchStat) refuses the model.
        #
        # TODO 3: the mode. Store momentum and epsilon, and set
        #   self.use_running_average = False. In NNX the mode is an attribute of the
        #   module, not an argument threaded through every call: model.eval() and
        #   model.train() set `use_running_average` on this module and on every
        #   module nested inside a bigger model, which is why the name matters.
        #
        # rngs: ones and zeros need no randomness, but NNX modules take `rngs` by
        #   convention (a Linear layer would draw its kernel from rngs.params()).
        raise NotImplementedError(NOT_IMPLEMENTED.format(where="MyBatchNorm.__init__"))

    def __call__(self, x: jax.Array) -> jax.Array:
        # TODO 4: two modes, chosen by self.use_running_average.
        #   False (training): normalize with the mean and the biased variance
        #     (divide by N) of THIS batch, over axis 0 (the batch axis; over axis 1
        #     it would be LayerNorm). Then update, in place,
        #       running = momentum * running + (1 - momentum) * batch_statistic
        #   True (eval): normalize with the running statistics and change nothing,
        #     so that a prediction does not depend on the rest of the batch.
        #
        # TODO 5: reading and writing a Variable. Read its array with
        #   self.running_mean[...] and write it with self.running_mean[...] = new.
        #   (`.value` still works but is deprecated.) Two writes that look right
        #   are not:
        #     running_mean = new              rebinds a local name: nothing is stored
        #     self.running_mean = new         replaces the BatchStat by a bare array
        #   Only the `[...] =` form updates the Variable that nnx.split, nnx.merge
        #   and nnx.jit track.
        #
        # Output: gamma * (x - mean) / sqrt(var + epsilon) + beta
        raise NotImplementedError(NOT_IMPLEMENTED.format(where="MyBatchNorm.__call__"))


def init_and_apply(seed: float, x: jax.Array, use_running_average: float) -> jax.Array:
    """Build ``MyBatchNorm`` for ``x``, call it once in the mode the flag says, return 1-D.

    Args:
        seed: PRNG seed, given as a float (e.g. 3.0).
        x: input of shape (N, D).
        use_running_average: 0.0 (training) or 1.0 (eval), given as a float.

    Returns:
        The output of the call, flattened to N * D values.
    """
    # TODO 6: the life cycle, the way a training loop uses the layer.
    #   a. Build the model for D = x.shape[-1] features with rngs=nnx.Rngs(...).
    #      The seed arrives as a float; nnx.Rngs, like JAX, makes keys from
    #      integers only.
    #   b. Set the mode with model.eval() or model.train(), as the flag says (it is
    #      a float). There is no use_running_average argument to pass at call
    #      time: forgetting model.eval() means eval silently normalizes with the
    #      batch and updates the statistics.
    #   c. Call the model once through nnx.jit, not jax.jit. nnx.jit splits the
    #      model into its state, traces the call, and writes the updated
    #      BatchStats back into the model. A plain jax.jit does not carry state:
    #      closing over the model, the BatchStat write raises TraceContextError
    #      ("Cannot mutate BatchStat from a different trace level"); passing the
    #      model as an argument, jax.jit updates a copy rebuilt inside the trace
    #      and drops it: the output looks right, and the model's running
    #      statistics silently never move (the grader reads them afterwards).
    #      (The functional alternative: nnx.split(model, nnx.Param,
    #      nnx.BatchStat) outside, nnx.merge inside a jax.jit, return the new
    #      state and nnx.update(model, ...) it back.)
    #   d. Return only the output, as one flat vector of N * D values.
    raise NotImplementedError(NOT_IMPLEMENTED.format(where="init_and_apply"))
