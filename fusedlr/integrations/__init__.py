"""fusedlr inside the frameworks people train with, one module per framework.

Each module imports its framework lazily (on first use of the module), so ``import fusedlr``
never imports transformers, Lightning, accelerate or timm:

- ``fusedlr.integrations.transformers``: HF ``Trainer`` with a fusedlr optimizer whose schedule
  is built from Trainer's own arguments; logs the lr the kernel used.
- ``fusedlr.integrations.lightning``: a ``LearningRateMonitor`` drop-in that logs the lr the
  kernel used, ``clip_gradients`` for mixed precision, ``optimizer_steps_per_epoch``, and the
  ``configure_optimizers`` recipe.
- ``fusedlr.integrations.accelerate``: fusedlr's introspection through ``AcceleratedOptimizer``.
- ``fusedlr.integrations.timm``: registration that survives timm's name parsing; timm's
  per-group ``lr_scale`` (layer decay) honoured on the device.
"""
