"""naspoison: audit neural architecture search under data poisoning."""

__version__ = "0.1.0"
