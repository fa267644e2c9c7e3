"""Zero-code instrumentations, one package per library (BaseInstrumentor subclasses)."""
