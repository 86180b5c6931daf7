"""How the kit checks that a declared filter narrows a listing: FilterCase and the cases
it knows for the shared filter vocabulary."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from imagehub.models import Image, Visibility, matches

__all__ = ["FILTER_CASES", "FilterCase", "case_for"]


@dataclasses.dataclass(frozen=True)
class FilterCase:
    """How the kit checks one filter key a backend declares in ``server_filters``.

    ``values`` picks the values to try from the images present; ``keeps`` says whether an
    image must be in the result for a value. With ``seeds_only`` the kit judges only the
    images it made (for filters whose meaning depends on who owns an image).
    """

    values: Callable[[Sequence[Image]], Iterable[Any]]
    keeps: Callable[[Image, Any], bool]
    seeds_only: bool = False


def _field_values(key: str) -> Callable[[Sequence[Image]], list[Any]]:
    def values(images: Sequence[Image]) -> list[Any]:
        found: dict[str, None] = {}
        for image in images:
            value = _value_of(image, key)
            if value is not None:
                found[str(value)] = None
        return list(found)
    return values


def _value_of(image: Image, key: str) -> Any:
    if key.startswith("properties."):
        return image.properties.get(key[len("properties."):])
    if key in {f.name for f in dataclasses.fields(Image) if not f.name.startswith("_")}:
        value = getattr(image, key)
        return value.value if isinstance(value, Visibility) else value
    return image.properties.get(key)


def _matches_case(key: str) -> FilterCase:
    def keeps(image: Image, value: Any) -> bool:
        return matches(image, {key: value})
    return FilterCase(_field_values(key), keeps)


def _middle_sizes(images: Sequence[Image]) -> list[int]:
    sizes = sorted({i.size for i in images if i.size is not None})
    return sizes[1:-1] or sizes


#: what the kit knows of the shared filter vocabulary; a key absent here is checked with
#: the client-side rules of ``imagehub.models.matches`` (field or property equality)
FILTER_CASES: Mapping[str, FilterCase] = {
    "name": FilterCase(_field_values("name"), lambda i, v: i.name == v),
    "id": FilterCase(_field_values("id"), lambda i, v: i.id == v),
    "visibility": FilterCase(lambda _: [v.value for v in Visibility],
                             lambda i, v: i.visibility.value == v),
    "tag": FilterCase(lambda images: sorted({t for i in images for t in i.tags}),
                      lambda i, v: v in i.tags),
    "alias": FilterCase(lambda images: sorted({a for i in images for a in i.aliases}),
                        lambda i, v: v in i.aliases),
    "size_min": FilterCase(_middle_sizes, lambda i, v: i.size is not None and i.size >= v),
    "size_max": FilterCase(_middle_sizes, lambda i, v: i.size is not None and i.size <= v),
    # Own images are listed whatever the member status asked for; what a member sees is
    # checked by the sharing flow.
    "member_status": FilterCase(lambda _: ["all", "accepted"], lambda i, v: True,
                                seeds_only=True),
}


def case_for(key: str, extra: Mapping[str, FilterCase]) -> FilterCase:
    """The case for ``key``: the backend's own, the kit's, or ``matches``' equality rules."""
    return extra.get(key) or FILTER_CASES.get(key) or _matches_case(key)
