from naspoison.suite.yamlio import SuiteError

__all__ = ["Suite", "SuiteError"]


def __getattr__(name: str):
    # the schema imports every registry (and with it torch): only when a suite is actually read,
    # so that `naspoison --help`, `verify` and `ls` start without it
    if name == "Suite":
        from naspoison.suite.schema import Suite

        return Suite
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
