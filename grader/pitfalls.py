"""The named mistakes: what each one is, why it matters in Flax, and a hint.

Tags are stable identifiers (they appear in results.json, the gradebook and the
instructors' table); the wording around them is for students. A hint points at
the idea to revisit, never at the code to paste. A pitfall that shows in the
values also owns the oracle models that reproduce it (``models``): the diagnosis
(grader.diagnosis.MISTAKES) is built from them. A new mistake the oracle can
already express (another constant, axis or rule it models) is one entry here,
its tag in the `names` of the checks that may see it, and its wrong submission.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Pitfall:
    tag: str
    title: str  # one line, as the student reads it
    why: str  # why it matters, in Flax terms
    hint: str  # what to look at next
    # The engine's finding this pitfall names, when an exercise words it under its
    # own tag (NNX calls Linen's `flag_ignored` `eval_not_switched`). Default: tag.
    finds: str = ""
    # How the oracle reproduces this mistake (grader.oracle.Variant fields), one
    # dict per way of making it; diagnosis tries each. None: named by a check's own
    # logic (an error, a declaration), not by the values.
    models: tuple[dict[str, object], ...] = dataclasses.field(default=(), compare=False)

    @property
    def finding(self) -> str:
        return self.finds or self.tag


_ALL = (
    Pitfall(
        "init_updates_stats",
        "running statistics change during init",
        "Module.init makes every collection writable and runs your forward pass once "
        "to create the variables. Without a guard, the example batch is folded into "
        "running_mean/running_var before training starts; current Flax raises no error.",
        "Update the running statistics only when `self.is_initializing()` is false "
        "(call it; a guard like is_mutable_collection is true during init too).",
    ),
    Pitfall(
        "stats_init_from_batch",
        "the running statistics start from the example batch",
        "The function that creates a variable runs once, in init, on the example batch: "
        "if it reads x (self.variable('batch_stats', 'running_mean', lambda: x.mean(0))), "
        "the running statistics start from whatever batch init was given instead of zeros "
        "and ones. The is_initializing() guard cannot help: this is the variable's own "
        "initial value, not an update.",
        "Create running_mean with zeros and running_var with ones, of shape (x.shape[-1],): "
        "use x for its shape only.",
    ),
    Pitfall(
        "apply_not_mutable",
        "apply is called without batch_stats in `mutable`",
        "Collections not listed in `mutable` are read-only during apply, so the "
        "training-mode update raises ModifyScopeVariableError. (Eval mode writes "
        "nothing: there a plain apply, which returns the output alone, is fine.)",
        "Pass mutable=[\"batch_stats\"] to apply and unpack (output, updates).",
    ),
    Pitfall(
        "stats_over_features",
        "statistics are not taken over the batch axis alone",
        "BatchNorm normalizes each feature with statistics over the batch (axis 0), "
        "giving (D,) running statistics; reducing over axis 1 is LayerNorm, and its "
        "(N,) statistics only broadcast when N == D; reducing over every element "
        "(no axis given) gives one number for all features.",
        "Reduce over axis 0 so that mean and variance have shape (D,).",
        models=(
            {"axis": "features"},
            {"axis": "features_broadcast"},
            {"axis": "all"},
        ),
    ),
    Pitfall(
        "eval_updates_stats",
        "eval mode changes the running statistics",
        "With use_running_average=True the layer is being evaluated: the running "
        "statistics must come out exactly as they went in.",
        "Write to the running statistics only in the training branch.",
        models=(
            {"update_in_eval": True},
        ),
    ),
    Pitfall(
        "eval_uses_batch_stats",
        "eval mode normalizes with the batch's statistics",
        "In eval mode a prediction must not depend on the other examples in the "
        "batch: normalize with running_mean/running_var instead.",
        "When use_running_average is true, normalize with the running statistics' "
        "`.value`, not with the batch's mean and variance.",
        models=(
            {"eval_stats": "batch"},
        ),
    ),
    Pitfall(
        "running_stats_crossed",
        "eval mode reads the running mean and variance crossed",
        "Eval normalizes with running_mean as the mean and running_var as the variance; "
        "reading one for the other (or one of them twice) looks right with a fresh "
        "module's zeros and ones only by luck of the numbers, never after training.",
        "Check which running statistic each of mean and var is read from in eval mode.",
        models=(
            {"eval_stats": "crossed"},
            {"eval_stats": "mean_twice"},
            {"eval_stats": "var_twice"},
        ),
    ),
    Pitfall(
        "train_uses_running_stats",
        "training mode normalizes with the running statistics",
        "During training the layer normalizes with the current batch's mean and "
        "variance; the running statistics are only updated, for use in eval.",
        "In training mode, compute mean and variance of x over axis 0 and use those.",
        models=(
            {"train_stats": "running_old"},
            {"train_stats": "running_new"},
        ),
    ),
    Pitfall(
        "train_skips_update",
        "training mode never updates the running statistics",
        "The running statistics are what eval mode uses; if training never writes "
        "them, a trained model evaluates with zeros and ones.",
        "Assign the new value to the variable's `.value` (a local name is not "
        "enough), and check that the guard calls is_initializing().",
        models=(
            {"update_in_train": False},
        ),
    ),
    Pitfall(
        "momentum_reversed",
        "the momentum weights are swapped",
        "With momentum 0.9 the running value keeps 90% of its old value and takes "
        "10% of the batch's: running = momentum * running + (1 - momentum) * batch.",
        "Check which term momentum multiplies.",
        models=(
            {"momentum_reversed": True},
        ),
    ),
    Pitfall(
        "unbiased_variance",
        "the variance divides by N-1",
        "This exercise (like Flax) uses the biased variance, the mean of squared "
        "deviations (divide by N), both to normalize and in the running update; "
        "N-1 is PyTorch's convention for the running variance.",
        "Use the mean of (x - mean)^2 over axis 0 (jnp.var's default ddof=0).",
        models=(
            {"norm_ddof": 1, "update_ddof": 1},
            {"norm_ddof": 1},
            {"update_ddof": 1},
        ),
    ),
    Pitfall(
        "eps_misplaced",
        "eps is missing, outside the square root, or another value",
        "eps keeps the division finite for features with (near) zero variance; the "
        "contract adds eps = 1e-5 to the variance: sqrt(var + eps). The observed "
        "line above says which of the three your output matches.",
        "Divide by sqrt(var + eps), with the eps the module is given (1e-5 by default).",
        models=(
            {"eps": "outside"},
            {"eps": "none"},
            {"eps_value": 1e-3},  # Keras's default
            {"eps_value": 1e-8},
        ),
    ),
    Pitfall(
        "stats_not_in_batch_stats",
        "running statistics are not in the batch_stats collection",
        "Everything in `params` is trained by the optimizer (its gradient is not "
        "zero), and apply(..., mutable=[\"batch_stats\"]) can only write batch_stats.",
        "Declare running_mean/running_var with self.variable(\"batch_stats\", ...).",
    ),
    Pitfall(
        "wrong_variable_names",
        "variables are named otherwise than the contract",
        "Checkpoints, optimizers and the exercise's tests find variables by collection "
        "and name: params gamma/beta and batch_stats running_mean/running_var. (The "
        "grader found yours by what their names suggest and compared their values.)",
        "Use exactly those names.",
    ),
    Pitfall(
        "variable_shape",
        "variables have another shape than (D,)",
        "gamma, beta and the running statistics hold one number per feature: shape "
        "(D,). A (1, D) statistic (keepdims=True) holds the right values but is not "
        "the contract's shape; one sized by x.shape[0] has one number per example, so "
        "a batch of another size no longer fits.",
        "Size every variable by x.shape[-1] and store statistics without keepdims "
        "(or squeeze them) before assigning them.",
    ),
    Pitfall(
        "state_shape_changes",
        "a running statistic changes shape when it is updated",
        "State must keep the shape it was created with: a lax.scan training loop carries "
        "it from step to step, and a checkpoint is restored into variables of the shape "
        "init made, so a (D,) statistic that becomes (1, D) after the first update breaks "
        "both, even though its values are right. It happens when the batch statistics are "
        "computed with keepdims=True and assigned as they are.",
        "Compute the batch mean and variance without keepdims (shape (D,)), or reshape "
        "them to the variable's own shape before assigning.",
    ),
    Pitfall(
        "dtype_not_float32",
        "variables or outputs in a narrower float type than float32",
        "The contract's variables and outputs are float32, the dtype of x. bfloat16 or "
        "float16 parameters and statistics keep 8 to 11 bits of mantissa: trained values "
        "are rounded at every step, and the running statistics stop moving once the "
        "update is smaller than their rounding step. (Mixed precision keeps a float32 "
        "copy of the weights for exactly this reason.)",
        "Create gamma, beta and the running statistics as float32 (param_dtype / dtype "
        "float32, or the input's dtype), and return float32.",
    ),
    Pitfall(
        "wrong_initial_values",
        "variables start from the wrong values",
        "A fresh BatchNorm is the identity on normalized data: gamma ones, beta "
        "zeros, running_mean zeros, running_var ones.",
        "Check each initializer.",
    ),
    Pitfall(
        "affine_misapplied",
        "gamma and beta are not applied as scale and shift",
        "After normalizing, the layer scales by gamma and shifts by beta; with their "
        "initial values (ones and zeros) a mistake here is invisible until training "
        "changes them.",
        "Return gamma * x_hat + beta (gamma itself is the scale: not 1 + gamma).",
        models=(
            {"affine": "none"},
            {"affine": "swapped"},
            {"affine": "no_gamma"},
            {"affine": "no_beta"},
            {"affine": "minus_beta"},
            {"affine": "one_plus_gamma"},
            {"affine": "minus_gamma"},
            {"affine": "gamma_both"},
        ),
    ),
    Pitfall(
        "output_not_flat",
        "init_and_apply does not return N*D values in 1-D",
        "The exercise's tests compare a flat vector of the N*D outputs.",
        "Flatten the output (e.g. .reshape(-1)) and return only it.",
    ),
    Pitfall(
        "flag_ignored",
        "init_and_apply ignores or misreads use_running_average",
        "The flag arrives as a float, 0.0 or 1.0; apply expects a bool. A module "
        "testing `is True` never sees 1.0 as true.",
        "Pass bool(use_running_average) to apply.",
    ),
    Pitfall(
        "flow_collections",
        "init_and_apply hands apply other collections than init made",
        "init returns {'params': ..., 'batch_stats': ...}, and apply needs both under those "
        "names: a typo or a swap makes Flax look for a collection or parameter that is not there.",
        "Split with variables['params'] and variables['batch_stats'], and pass "
        "{'params': params, 'batch_stats': batch_stats} to apply.",
    ),
    Pitfall(
        "seed_not_cast",
        "the float seed goes to the PRNG unconverted",
        "jax.random.PRNGKey(3.0) raises TypeError: a PRNG seed must be an integer.",
        "Convert with int(seed) before making the key.",
    ),
    Pitfall(
        "gradient_blocked",
        "gradients do not flow through the batch statistics",
        "In training mode the batch mean and variance depend on x, and autodiff must "
        "see that dependence (BatchNorm's gradient is not gamma/std times upstream).",
        "Do not wrap the batch statistics in stop_gradient or compute them outside JAX.",
    ),
    Pitfall(
        "momentum_value",
        "the running statistics move at another rate than momentum = 0.9",
        "The update is running = momentum * running + (1 - momentum) * batch with "
        "momentum = 0.9. flax.linen.BatchNorm defaults to 0.99: wrapping it without "
        "momentum=0.9, or copying a constant from elsewhere, makes the statistics lag; "
        "applying the update twice in one step moves them as momentum 0.81 would.",
        "Check the momentum your module uses (its default, or what you pass to "
        "nn.BatchNorm).",
        models=(
            {"momentum": 0.99},  # flax.linen.BatchNorm's default
            {"momentum": 0.999},
            {"momentum": 0.95},
            {"momentum": 0.81},  # the update applied twice per step
        ),
    ),
    Pitfall(
        "variance_not_clipped",
        "the one-pass variance can come out negative",
        "E[x^2] - E[x]^2 in float32 cancels when a feature is (nearly) constant and far "
        "from zero: rounding leaves a tiny negative number, sqrt(var + eps) of it is NaN, "
        "and one NaN in a batch poisons a whole training step. flax.linen.BatchNorm "
        "clips it at zero for this reason.",
        "Compute the variance as mean((x - mean)^2), or clip the one-pass form with "
        "jnp.maximum(var, 0.0).",
        models=(
            {"variance": "unclipped"},
        ),
    ),
    Pitfall(
        "update_weights",
        "the running update weighs old and new values otherwise than momentum and 1 - momentum",
        "The update is a weighted average: running = 0.9 * running + 0.1 * batch, weights "
        "that sum to one. Other weights (1 + momentum, a dropped factor, a minus sign) make "
        "the running statistics drift away from any batch's.",
        "Write the update as momentum * running + (1 - momentum) * batch and compare it "
        "term by term with yours (the observed line says what yours does).",
    ),
    Pitfall(
        "std_misused",
        "x - mean is not divided by the standard deviation",
        "Normalizing divides by the standard deviation, sqrt(var + eps): dividing by the "
        "variance, multiplying, or not dividing at all leaves the output on another scale "
        "than unit variance.",
        "Divide x - mean by jnp.sqrt(var + eps).",
        models=(
            {"scale": "var"},
            {"scale": "times_std"},
            {"scale": "none"},
        ),
    ),
    Pitfall(
        "not_centered",
        "the mean is not subtracted from x",
        "Normalizing centres each feature first: x - mean. Without it (or with + mean) the "
        "output keeps the batch's offset.",
        "Subtract the mean you normalize with: (x - mean) / sqrt(var + eps).",
        models=(
            {"center": "none"},
            {"center": "plus_mean"},
        ),
    ),
    Pitfall(
        "variance_wrong",
        "the variance is not the mean of (x - mean)^2 over the batch",
        "The variance is the mean of squared deviations from the mean, per feature: mean(x^2) is the "
        "variance plus mean^2, mean((x + mean)^2) measures something else, and one number over every "
        "element mixes the features.",
        "Compute jnp.mean(jnp.square(x - mean), axis=0) (or jnp.var(x, axis=0)).",
        models=(
            {"variance": "uncentered"},
            {"variance": "plus_mean"},
            {"variance": "pooled"},
        ),
    ),
    Pitfall(
        "ema_debiased",
        "the running statistics are debiased",
        "Haiku's ExponentialMovingAverage divides by 1 - momentum^t so that a zero-started "
        "average is unbiased; this contract (like Flax) starts running_var at ones and "
        "updates with the plain EMA, with no step counter.",
        "Use running = momentum * running + (1 - momentum) * batch, with no division "
        "and no count.",
        models=(
            {"update_rule": "debiased"},
        ),
    ),
    Pitfall(
        "ema_first_overwrite",
        "the first update replaces the running statistics",
        "Some libraries copy the first batch's statistics into the running ones; here "
        "the first update is an EMA step from the initial zeros and ones like every other.",
        "Apply the same EMA update at every training step, the first one included.",
        models=(
            {"update_rule": "first_overwrite"},
        ),
    ),
    Pitfall(
        "not_jittable",
        "the module fails under jax.jit",
        "Training steps are jitted: inside jit, values are tracers, so NumPy calls, "
        "float()/bool() of arrays and Python branches on values fail.",
        "Use jax.numpy for array math and branch only on Python values such as "
        "use_running_average.",
    ),
)

PITFALLS: dict[str, Pitfall] = {p.tag: p for p in _ALL}
TAGS = tuple(PITFALLS)
