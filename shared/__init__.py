"""mde-containment domain code: parse, decide, act, report. Entry points live in *_fn/."""
