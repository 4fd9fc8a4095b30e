"""Known mistakes by name: a failed check's message mapped to what an instructor would re-teach.

The checks' messages are the grader's own sentences (``hidden_checks``, ``loss_checks``,
``simclr_helpers.checks``); each rule below matches the fixed words of one of them, never a number, so that the
same mistake gets the same name whatever inputs the check drew. A message the rules do not know is grouped by
``unnamed_key``: its first line with every number masked and anything a student's exception said cut off, so no
test input, expected value or student text reaches a class report through it. ``tests/test_corpus.py`` checks
that each known mistake of the corpus (``autograder/course/variants.py``) gets its name.

A message can quote the student's own exception, so a student can make a failure of theirs match a rule: that
changes only which name the class report counts, never a score.
"""
from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Mistake:
    """A named mistake: a stable ``id``, the ``title`` an instructor reads, and the message ``pattern`` (searched
    in the messages of the checks whose grade_id starts with ``checks``; empty: any check)."""
    id: str
    title: str
    pattern: str
    checks: str = ""

    def matches(self, grade_id: str, message: str) -> bool:
        return grade_id.startswith(self.checks) and re.search(self.pattern, message) is not None


AUGMENT, HEAD, LOSS, TRAIN, PROBE, RUN = ("test_get_augmentations", "test_projection_head", "test_nt_xent",
                                          "test_train_epoch", "test_linear_probe", "test_training_run")

# First match wins: the general failures (stub, missing, time, crash) before the components' own mistakes.
MISTAKES: tuple[Mistake, ...] = (
    Mistake("not_written", "not written yet (the stub as handed out)", r"raised NotImplementedError: the stub"),
    Mistake("not_defined", "not defined (the cell is missing or fails when run)",
            r"is not defined: run \(or fix\) the cell|^no cell defines "),
    Mistake("time_limit", "reached the time limit (an endless loop, or far too slow)",
            r"time limit|already used its time"),
    Mistake("process_died", "its process died (sys.exit, os._exit, a crash or the memory limit)",
            r"the process running your code .* while running"),

    Mistake("augment_not_random", "no random step: two views of one image are the same",
            r"two calls on the same image gave the same view", AUGMENT),
    Mistake("augment_gray_rate", "random grayscale missing or at the wrong rate (RandomGrayscale(p=0.2))",
            r"% of the views are gray; expected about", AUGMENT),
    Mistake("augment_jitter_rate", "colour jitter missing or at the wrong rate (RandomApply([ColorJitter], p=0.8))",
            r"colour-jittered; expected about", AUGMENT),
    Mistake("augment_no_crop", "no random crop (RandomResizedCrop)", r"RandomResizedCrop missing", AUGMENT),
    Mistake("augment_normalize", "normalisation wrong (Normalize with the CIFAR-10 mean and std, last, only when "
            "normalize=True)", r"normalize=(True|False)", AUGMENT),
    Mistake("augment_not_tensor", "views are not float32 tensors of shape (3, 32, 32) (ToTensor)",
            r"must be float32|a view must have shape|expected views of shape", AUGMENT),

    Mistake("head_batchnorm", "BatchNorm1d missing with batch_norm=True (or there with batch_norm=False)",
            r"BatchNorm1d must be there exactly when|keeps (no )?running statistics"
            r"|batch_norm=True: the head calls (?:(?!BatchNorm1d)[^;])*; expected"
            r"|batch_norm=False: the head calls [^;]*BatchNorm1d[^;]*; expected", HEAD),
    Mistake("head_no_relu", "no ReLU between the two Linear layers", r"does not receive ReLU of the hidden layer",
            HEAD),
    Mistake("head_layers", "layers other than Linear -> [BatchNorm1d] -> ReLU -> Linear",
            r"the head calls .*; expected|expected Linear\(", HEAD),
    Mistake("head_gradients", "gradients do not reach every parameter of the head",
            r"no gradient reaches|the gradient of \S+ is wrong", HEAD),

    Mistake("loss_tau_multiplied", "temperature multiplied instead of divided (sim * tau)",
            r"multiplied by the temperature", LOSS),
    Mistake("loss_self_similarity", "self-similarity not masked (the loss is not 0 for a single pair)",
            r"similarity with itself looks included|with a single pair there are no negatives"
            r"|with one pair the loss must be 0", LOSS),
    Mistake("loss_mean_over_n", "mean over N instead of over all 2N anchors", r"the value is twice the right one",
            LOSS),
    Mistake("loss_not_symmetric", "only one view's anchors, or positives at the wrong index (loss not symmetric)",
            r"the value is half the right one|nt_xent\(z_i, z_j\)=\S+ but nt_xent\(z_j, z_i\)"
            r"|loss\(z_i, z_j\)=\S+ but loss\(z_j, z_i\)", LOSS),
    Mistake("loss_no_l2", "no L2 normalisation of the projections", r"are they L2-normalised", LOSS),
    Mistake("loss_detached", "the loss is detached from z_i and z_j (no gradient)",
            r"not a scalar that depends on z_i and z_j|detached or computed without autograd", LOSS),
    Mistake("loss_not_scalar", "does not return a scalar tensor", r"must (return|be) a scalar", LOSS),
    Mistake("loss_unstable", "numerically unstable (inf or nan)", r"the loss is -?(nan|inf)\b", LOSS),

    Mistake("train_no_zero_grad", "optimizer.zero_grad() missing in train_epoch (gradients accumulate)",
            r"gradients accumulate across batches", TRAIN),
    Mistake("train_same_view", "the same view used twice (the other view never reaches the encoder)",
            r"the encoder never saw the view", TRAIN),
    Mistake("train_step_count", "not one optimizer step per batch",
            r"optimizer steps; the weights (after the epoch )?are those after|optimizer steps, counted", TRAIN),
    Mistake("train_not_mean", "does not return the epoch's mean loss (e.g. the last batch's)",
            r"train_epoch returned \S+, but the mean of the per-batch losses", TRAIN),
    Mistake("train_weights_unchanged", "some weights are never updated", r"'s \S+ did not change", TRAIN),
    Mistake("train_not_learning", "training does not lower the loss", r"took the loss only from", TRAIN),

    Mistake("probe_train_mode", "encoder in training mode during the probe (encoder.eval() missing)",
            r"(running_mean|running_var|num_batches_tracked) changed during the probe"
            r"|with one class per batch the accuracy fell", PROBE),
    Mistake("probe_not_frozen", "encoder not frozen in linear_probe (trained with the classifier)",
            r"a gradient reached the encoder|the encoder was trained; only the linear classifier"
            r"|changed: do not train it|changed during the probe", PROBE),
    Mistake("probe_mode_not_restored", "the encoder's train/eval mode not restored after the probe",
            r"before linear_probe and (is )?in (training|eval) mode after", PROBE),
    Mistake("probe_wrong_accuracy", "returns something other than the test accuracy",
            r"return the share of test_loader's images", PROBE),
    Mistake("probe_not_learning", "the probe does not learn linearly separable features",
            r"on linearly separable features the accuracy should be close to 1", PROBE),

    Mistake("run_below_mark", "the trained encoder's probe accuracy is below the pass mark", r"below the pass mark",
            RUN),
    Mistake("run_no_device", "not run: no GPU on the grading machine (regrade on one)",
            r"^not run: the training run needs a", RUN),
)
BY_ID = {mistake.id: mistake for mistake in MISTAKES}
# The training run failed only because a component's check did (training_run.py): that component's mistake, not
# one of its own.
FOLLOWS_COMPONENTS = re.compile(r"the points follow the checks of .*, and one of them failed")

_NUMBER = re.compile(r"(?<![\w)])-?\d+(?:\.\d+)?(?:e[+-]?\d+)?|\d+")
_RAISED = re.compile(r"^(.{1,80}?) raised ([A-Za-z_][\w.]*)")
UNNAMED_LENGTH = 120


def name(grade_id: str, message: str) -> Mistake | None:
    """The known mistake a failed check's ``message`` names, if any."""
    return next((mistake for mistake in MISTAKES if mistake.matches(grade_id, message)), None)


def follows_components(grade_id: str, message: str) -> bool:
    """Whether this failure is the training run's points following a failed component check."""
    return grade_id.startswith(RUN) and FOLLOWS_COMPONENTS.search(message) is not None


def unnamed_key(message: str) -> str:
    """What groups a failure no rule names: the first line, ``X raised Error`` without what the error said (the
    student's text), every number masked as ``#`` (the inputs and expected values of the check), at most
    ``UNNAMED_LENGTH`` characters."""
    first = message.strip().split("\n", 1)[0]
    raised = _RAISED.match(first)
    if raised:
        first = f"{raised.group(1)} raised {raised.group(2)}"
    first = _NUMBER.sub("#", first)
    return first if len(first) <= UNNAMED_LENGTH else first[:UNNAMED_LENGTH - 1] + "…"
