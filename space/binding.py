"""Module-level handlers bound to the app's context for Gradio.

functools.partial hides a handler's type hints from Gradio (it would no longer fill in gr.Request or
gr.Progress), so `bind` makes a real function with the handler's name, hints and signature minus the bound
arguments; generators stay generators, so streaming still works."""

import functools
import inspect


def bind(handler, *bound):
    """`handler` with its first len(bound) arguments fixed, as a plain (generator) function for Gradio."""
    if inspect.isgeneratorfunction(handler):
        @functools.wraps(handler)
        def call(*args, **kwargs):
            yield from handler(*bound, *args, **kwargs)
    else:
        @functools.wraps(handler)
        def call(*args, **kwargs):
            return handler(*bound, *args, **kwargs)
    signature = inspect.signature(handler)
    call.__signature__ = signature.replace(parameters=list(signature.parameters.values())[len(bound):])
    return call
