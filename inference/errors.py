"""Named errors of the inference package; callers translate them at their edges."""


class TuesdayError(Exception):
    """Base of every error Tuesday raises on purpose."""


class TaskError(TuesdayError):
    """A task file is missing, malformed or inconsistent."""


class RegistryError(TuesdayError):
    """A model version is missing, incomplete or cannot be promoted."""


class ModelError(TuesdayError):
    """A model file cannot be found, loaded or used."""
