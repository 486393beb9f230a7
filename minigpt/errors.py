"""The errors a run reports as one line that says what to change (train.py prints them and exits 2; the app shows
them). Bad data is a minigpt.corpus.CorpusError, a Hub that cannot be used a minigpt.hub.HubError."""


class SetupError(ValueError):
    """A bad argument combination, or an output folder that cannot take the run."""


class SettingError(SetupError):
    """One setting out of its bounds (minigpt.arguments): `name` is the field, `bound` what it must be (a UI says
    it in its own words), `value` what was given."""

    def __init__(self, name: str, bound, value):
        super().__init__(f"--{name} must be {bound}, got {value}")
        self.name, self.bound, self.value = name, bound, value


class Diverged(SetupError):
    """Training met a loss that is not finite: the learning rate (or the precision) is too high for this model.
    `step`: the optimizer step it happened at; `weights_step`: the step whose weights gave it (a training step's
    loss comes from the weights of the step before)."""

    def __init__(self, step: int, loss: float, evaluation: bool = False):
        where = "the validation loss" if evaluation else "the training loss"
        super().__init__(f"training diverged at step {step}: {where} is {loss}; lower --learning_rate (or raise "
                         "--warmup_steps)")
        self.step, self.loss = step, loss
        self.weights_step = step if evaluation else step - 1
