"""BatchNorm with ``nnx.BatchStat`` in Flax NNX: the same lesson in today's API.

The worker runs it with :mod:`grader.probes_nnx` (the same arrays as Linen's, plus
NNX's own optimizer step and split/merge round trip); its checks table
(:mod:`.checks`) is the engine's in NNX words; its pitfalls are Linen's that NNX
can show, in NNX's words, plus its own.
"""

from __future__ import annotations

import dataclasses

from grader.exercises import PROJECT, Exercise
from grader.pitfalls import PITFALLS, Pitfall


def _pitfalls() -> dict[str, Pitfall]:
    """Linen's pitfalls that NNX can show, in NNX's words, plus NNX's own."""
    linen_only = {"init_updates_stats", "stats_init_from_batch", "apply_not_mutable", "flow_collections"}  # no init pass, no `mutable`,
    # no collections dict in NNX
    words = {tag: p for tag, p in PITFALLS.items() if tag not in linen_only}
    replace = {
        "eval_updates_stats": ("After model.eval() the layer is being evaluated: the running statistics must "
                               "come out exactly as they went in.",
                               "Write to the BatchStat variables only when not self.use_running_average."),
        "eval_uses_batch_stats": ("In eval mode a prediction must not depend on the other examples in the batch: "
                                  "normalize with running_mean/running_var instead.",
                                  "When self.use_running_average is true, read self.running_mean[...] and "
                                  "self.running_var[...], not the batch's mean and variance."),
        "train_skips_update": ("The running statistics are what eval mode uses; if training never writes them, "
                               "a trained model evaluates with zeros and ones.",
                               "Assign into the variable: self.running_mean[...] = new (binding a local name "
                               "is not enough)."),
        "stats_not_in_batch_stats": ("An optimizer over nnx.Param trains every Param: running statistics declared "
                                     "as Param get gradients and drift; declared as another Variable type, "
                                     "nnx.state(model, nnx.BatchStat) and nnx.split(model, nnx.Param, "
                                     "nnx.BatchStat) do not find them. nnx.BatchStat is the state no optimizer "
                                     "touches and the split separates.",
                                     "Declare running_mean/running_var as nnx.BatchStat(...)."),
        "wrong_variable_names": ("Checkpoints, optimizers and the exercise's tests find variables by attribute "
                                 "name: nnx.Param gamma/beta and nnx.BatchStat running_mean/running_var. (The "
                                 "grader found yours by what their names suggest and compared their values.)",
                                 "Use exactly those attribute names."),
        "flag_ignored": ("The flag arrives as a float, 0.0 or 1.0: model.eval() for 1.0 and model.train() "
                         "for 0.0 set use_running_average on every layer of the model.",
                         "Call model.eval() or model.train() as the flag says before the call."),
        "seed_not_cast": ("nnx.Rngs needs an integer seed (or a key); the exercise passes a float.",
                          "Build nnx.Rngs(int(seed))."),
        "momentum_value": ("The update is running = momentum * running + (1 - momentum) * batch with momentum = "
                           "0.9. nnx.BatchNorm defaults to 0.99: copying its default makes the statistics lag.",
                           "Check the momentum your module stores and uses."),
    }
    for tag, (why, hint) in replace.items():
        words[tag] = dataclasses.replace(words[tag], why=why, hint=hint)
    # NNX's own names for two of Linen's findings.
    renamed = {"stats_not_in_batch_stats": ("stats_as_params", "running statistics are not nnx.BatchStat (an nnx.Param "
                                                                "or another Variable type)"),
               "flag_ignored": ("eval_not_switched", "model.eval() / model.train() not switched as the flag says")}
    for finding, (tag, title) in renamed.items():
        words[tag] = dataclasses.replace(words.pop(finding), tag=tag, title=title, finds=finding)
    for tag, pitfall in words.items():  # the rest speak of Flax in general
        words[tag] = dataclasses.replace(pitfall, why=pitfall.why.replace("flax.linen.BatchNorm", "Flax's BatchNorm"),
                                         hint=pitfall.hint.replace("flax.linen.BatchNorm", "Flax's BatchNorm"))
    words["stats_not_variables"] = Pitfall(
        "stats_not_variables",
        "running statistics are plain arrays, not nnx.BatchStat",
        "NNX finds state by Variable type: nnx.split(model, nnx.Param, nnx.BatchStat), nnx.state and "
        "optimizers see a BatchStat, never a bare array. `self.running_mean = new` replaces the Variable "
        "with an array: the values may look right, but the model can no longer be split into params and "
        "batch statistics.",
        "Declare nnx.BatchStat(...) in __init__ and update in place: self.running_mean[...] = new.",
    )
    words["params_not_param"] = Pitfall(
        "params_not_param",
        "gamma/beta are not nnx.Param",
        "An optimizer is built over a model's nnx.Param variables (nnx.Optimizer(model, tx, wrt=nnx.Param)): "
        "gamma and beta declared as another Variable type are never trained, and "
        "nnx.split(model, nnx.Param, nnx.BatchStat) files them elsewhere.",
        "Declare gamma and beta as nnx.Param(...) (the statistics as nnx.BatchStat).",
    )
    words["built_in_eval_mode"] = Pitfall(
        "built_in_eval_mode",
        "a new model is in eval mode",
        "In NNX the mode is state of the module, set at construction: a new BatchNorm trains "
        "(use_running_average=False) until someone calls model.eval(). A model built in eval mode "
        "normalizes its first batches with zeros and ones and never updates its statistics wherever a "
        "caller does not know to call model.train() first (a training loop written for any other layer).",
        "Set self.use_running_average = False in __init__; leave eval mode to model.eval().",
    )
    words["jax_jit_on_state"] = Pitfall(
        "jax_jit_on_state",
        "the BatchStat update is lost or refused by a plain jax.jit",
        "jax.jit traces a pure function of arrays: it does not carry an NNX module's state in and out. "
        "Closing over the model, the update raises TraceContextError ('Cannot mutate BatchStat from a "
        "different trace level'). Passing the model as an argument, jax.jit flattens it and works on a copy "
        "rebuilt inside the trace: the output is right, and the update dies with the copy, so the model's "
        "running statistics never move. A functional nnx.split / nnx.merge inside jax.jit does the same "
        "when the new state is not returned and written back. nnx.jit carries the state in and out.",
        "Call the step through nnx.jit: step = nnx.jit(lambda model, x: model(x)). With jax.jit, return "
        "the state from the traced function and write it back: y, state = step(graphdef, state, x), then "
        "nnx.update(model, state).",
    )
    return words


EXERCISE = Exercise(
    name="batchnorm_nnx",
    title="BatchNorm with nnx.BatchStat (flax.nnx)",
    stub=PROJECT / "exercise" / "nnx" / "batchnorm.py",
    instructions=PROJECT / "exercise" / "nnx" / "README.md",
    reference=PROJECT / "solution" / "nnx" / "batchnorm.py",
    adapter="probes_nnx",
    required=("MyBatchNorm", "init_and_apply"),
    checks_table="grader.exercises.batchnorm_nnx.checks:CHECKS",
    pitfalls=_pitfalls(),
    known_wrong=(PROJECT / "tests" / "submissions_nnx" / "wrong",),
    short="NNX",
    markers=(r"\bflax\.nnx\b|\bfrom\s+flax\s+import\s+nnx\b", r"\bnnx\.Module\b", r"\bnnx\.BatchStat\b",
             r"\bnnx\.Param\b", r"\bnnx\.Rngs\b", r"\bnnx\.(?:split|merge|state|jit)\b", r"\brngs\s*[:=]"),
)
