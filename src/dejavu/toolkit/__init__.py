"""The dejavu toolkit: what a user runs (tasks, models, data, training, CLI).

The toolkit builds on the core (``dejavu.redaction``, ``dejavu.crm``, ...);
the core never imports from here.
"""
