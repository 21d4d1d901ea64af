from naspoison.suite.schema import Suite
from naspoison.suite.yamlio import SuiteError

__all__ = ["Suite", "SuiteError"]
