"""The one classifier flow of mnist, cifar, transfer and names-rnn: train (or load the --checkpoint) -> find the
lr -> fit -> report per class -> predict -> the summary.

A task (flows/image_classifier.ImageTask, names-rnn's NamesTask) supplies its data, its model (built by its
command's `build_model(config, state)`) and its predictor; everything else is this module's, the same for all.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from torchtools.core.engine import EvalResult, Objective, fit
from torchtools.core.errors import UserError
from torchtools.core.lr_finder import run_finder
from torchtools.core.optim import make_optimizer, make_scheduler
from torchtools.core.report import report
from torchtools.core.run import Run
from torchtools.core.summary import summarise


def check_trainable(source: object, classes: list[str], train: int, held_out: int, *, held_out_asked: bool,
                    unit: str, kinds: str = "class(es)") -> None:
    """Refuse, before any epoch, a classifier that cannot learn or cannot be scored."""
    if len(classes) < 2:
        raise UserError(f"{source} holds {unit} of {len(classes)} {kinds} ({', '.join(classes) or 'none'}): "
                        "a classifier needs two or more")
    if train == 0:
        raise UserError(f"{source} leaves no training {unit}")
    if held_out_asked and held_out == 0:
        raise UserError(f"{source}: the held-out split came out empty ({train} {unit}); add {unit}, "
                        "or pass --val-split 0 to hold none out")


class Task:
    """What a classifier command brings to the flow. The training side is read only when the run trains."""

    # What the data is counted in, and what its classes are called (in messages); the state beside the weights
    # that a resumed run's data must give again, by key, with what it is called.
    unit, kinds, plural = "images", "class(es)", "classes"
    resumed = {"classes": "the class list"}

    def __init__(self, run: Run, model: nn.Module, classes: list[str], state: dict[str, Any], *, source: object,
                 eval_name: str = "test", plot=None):
        self.run, self.model, self.classes, self.state = run, model, classes, state
        self.source, self.eval_name, self.plot = source, eval_name, plot

    # Training: the counts check_trainable reads, and the batches.
    train_count = held_out_count = 0
    held_out_asked = True
    class_weights: list[float] | None = None  # the training loss's weight per class (--class-weights)

    def batches(self) -> tuple[Any, Any]:
        """(training batches, held-out batches or None)."""
        raise NotImplementedError

    def finder_batches(self):
        """Batches for the lr range test, which must use up none of training's draws."""
        raise NotImplementedError

    def summary_input(self, train_batches) -> tuple[Any, str]:
        """(two real inputs, as the model takes them, the summary's title) for the model summary."""
        raise NotImplementedError

    def before_fit(self, train_batches) -> None:
        """Anything shown of the training inputs before the first epoch."""

    def fit_inputs(self, train_batches, held_out):
        """(the module fit trains, its training batches, its held-out batches)."""
        return self.model, train_batches, held_out

    def after_fit(self, train_batches, held_out) -> None:
        """Anything learnt of the data while training (files found unreadable, say)."""

    # A --checkpoint run, then every run.
    def evaluate_loaded(self) -> EvalResult | None:
        """The loaded model scored on the held-out data the run was given, if any."""
        return None

    def report_more(self, evaluation: EvalResult) -> None:
        """The task's own --report files about the held-out results."""

    def predict(self) -> dict[str, Any]:
        """Label what the user asked for; the summary's prediction keys."""
        raise NotImplementedError

    def summary(self) -> dict[str, Any]:
        """The task's own summary keys."""
        return {}


def train_evaluate_predict(run: Run, task: Task) -> None:
    """Train (or load), report per class, predict, and end with the summary."""
    config, model = run.config, task.model
    result, evaluation, metrics, found = None, None, {}, {}
    if run.trains:
        check_trainable(task.source, task.classes, task.train_count, task.held_out_count,
                        held_out_asked=task.held_out_asked, unit=task.unit, kinds=task.kinds)
        for key, what in task.resumed.items():
            run.check_resumed(key, task.state[key], what)
        train_batches, held_out = task.batches()
        trained = [parameter for parameter in model.parameters() if parameter.requires_grad]
        objective = Objective.classification(config.label_smoothing, task.class_weights, run.device)
        found["model_summary"] = summarise(model, *task.summary_input(train_batches))
        finding = run_finder(run, model, objective, task.finder_batches, trained)
        if finding is not None:
            found["suggested_lr"] = finding.suggested
        if not run.finds_lr_only:
            optimizer = make_optimizer(run.config, trained)  # the settled config: --lr auto's suggestion is its lr
            scheduler, per_step = make_scheduler(run.config, optimizer, len(train_batches))
            task.before_fit(train_batches)
            fit_model, fit_train, fit_held_out = task.fit_inputs(train_batches, held_out)
            result = fit(fit_model, objective, optimizer, fit_train, fit_held_out, run, scheduler=scheduler,
                         step_scheduler=per_step, eval_name=task.eval_name, state=task.state)
            task.after_fit(train_batches, held_out)
            evaluation, metrics = result.evaluation, dict(result.metrics)
    else:
        run.load_model(model, f"{len(task.classes)} {task.plural}")
        evaluation = task.evaluate_loaded()
        if evaluation is not None:
            metrics = {f"{task.eval_name}_loss": evaluation.loss, f"{task.eval_name}_accuracy": evaluation.accuracy}
    per_class = confusion = None
    if evaluation is not None:
        per_class, confusion = report(evaluation, task.classes, split=task.eval_name, plot=task.plot,
                                      writer=run.writer, folder=run.report)
        if run.report is not None:
            task.report_more(evaluation)
    predicted = task.predict()
    run.finish(result, metrics=metrics, **task.summary(), **found, per_class_accuracy=per_class,
               confusion_matrix=confusion, **predicted)
