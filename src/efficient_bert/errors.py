"""The exception a component raises for a bad value of one of its own arguments."""


class ArgumentError(ValueError):
    """``argument`` has a value the component cannot use; the message says why and what would do.

    Components know nothing of YAML: the config layer (:mod:`efficient_bert.builders`) turns this
    into a message about the key, ``model.size: ...``.
    """

    def __init__(self, argument: str, message: str):
        super().__init__(message)
        self.argument = argument
