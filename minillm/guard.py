"""All or nothing: an update of a stateful object (a cache, a memory, a decoder) either finishes,
or puts the object back as it was, or leaves it refusing to be used.

An update that stops half-way (Ctrl-C in a notebook raises KeyboardInterrupt wherever Python is)
could leave, say, a cache's counters ahead of its stored keys; the next forward would then run
without an error and return plausible, wrong logits. `all_or_nothing` marks the objects busy
before the update's first change and clears the mark after its last; an update that raises calls
its `undo` (cheap where the object replaces its tensors instead of writing into them: it puts
back references, see `remember`) and clears the mark, and without an undo the mark stays, so every
later use (`check_usable`) says what happened and how to recover. Nothing is copied per update.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

RECOVER = "build a new one"  # a class sets `recover` to say more, e.g. "call cache.reset() or build a new one"


def check_usable(obj: object) -> None:
    """Refuse an object whose last update was interrupted half-way (and could not be undone)."""
    what = getattr(obj, "_interrupted_in", None)
    if what is not None:
        name = type(obj).__name__
        raise RuntimeError(
            f"this {name} was interrupted during {what} and may be half-updated: {getattr(obj, 'recover', RECOVER)}"
        )


@contextmanager
def all_or_nothing(what: str, *objects: object, undo: Callable[[], None] | None = None) -> Iterator[None]:
    """Run the block that updates `objects` (`what` names it in the error, e.g. "a forward").
    If it raises, `undo()` puts them back and they stay usable; without an undo they refuse use."""
    for obj in objects:
        check_usable(obj)
    try:  # the marks are set and cleared inside: Ctrl-C between two of them is undone too
        for obj in objects:
            obj._interrupted_in = what
        yield
        for obj in objects:
            obj._interrupted_in = None
    except BaseException:
        if undo is not None:
            undo()
            for obj in objects:
                obj._interrupted_in = None
        raise


def remember(*objects: object) -> Callable[[], None]:
    """An undo for objects whose updates assign attributes (never write into a tensor or list
    they hold): it puts back every attribute as it is now (references, not copies)."""
    saved = [(obj, dict(vars(obj))) for obj in objects]

    def undo() -> None:
        for obj, attrs in saved:
            vars(obj).clear()
            vars(obj).update(attrs)

    return undo
