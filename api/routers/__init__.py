"""One router per resource; each route builds a command or queries a view, nothing more."""
