"""The YAML layer of pretraining: a run's YAML files and overrides become a Composer Trainer.

- :mod:`.schema`: which keys a run YAML may hold (:class:`TrainConfig`), loading and validation;
- :mod:`.registry` and :mod:`.components`: every component name a YAML can give, and its factory;
- :mod:`.checks`, then :mod:`.build`: the checks before anything is built, then the build in named
  steps (:func:`build_trainer`);
- :mod:`.trainer`: Composer's Trainer reading the loss at log intervals only;
- :mod:`.run` and :mod:`.main`: starting and ending a run; ``main.py`` and ``python -m
  efficient_bert.pretrain`` call :func:`~efficient_bert.pretrain.main.main`.

The library below (``efficient_bert.model``, ``.algorithms``, ``.budget``, ...) knows nothing of it.
"""
