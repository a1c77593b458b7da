"""Every built-in resource that needs a parameter says where a walk finds its values.

Portability walks each connection by itself (gateway.processor_requests.connection_walk);
a required parameter without ``values_from`` leaves its resource out of every bundle,
so each such gap is named here with its reason.
"""

from __future__ import annotations

import pytest

from providers import BUILTIN_PROVIDERS
from providers.base import Param, ValuesFrom
from providers.calendly import PROVIDER as CALENDLY
from tests.providers.stand import fixture

# Only a caller can name these (the reason is beside the declaration).
NO_SOURCE = {("linkedin", "organization.posts", "organization_id")}

REQUIRED = [
    (provider.name, resource.name, param)
    for provider in BUILTIN_PROVIDERS.values()
    for resource in provider.resources.values()
    for param in resource.params
    if param.required
]


def test_the_required_parameters_are_the_known_ones() -> None:
    """A new parameterized resource shows up here and must declare its source."""
    assert {(p, r, param.name) for p, r, param in REQUIRED} == {
        ("sandbox", "comments", "post_id"),
        ("facebook", "page.posts", "page_id"),
        ("facebook", "page.comments", "page_id"),
        ("facebook", "page.comments", "post_id"),
        ("facebook", "page.conversations", "page_id"),
        ("instagram", "comments", "media_id"),
        ("calendly", "invitees", "event_uuid"),
        ("linkedin", "organization.posts", "organization_id"),
    }


@pytest.mark.parametrize(("provider", "resource", "param"), REQUIRED, ids=lambda v: str(v))
def test_each_source_names_a_parent_the_walk_can_fetch(
    provider: str, resource: str, param: Param
) -> None:
    """The parent exists, and what it needs is chosen before this parameter."""
    declared = BUILTIN_PROVIDERS[provider].resources[resource]
    source = next(p for p in declared.params if p is param).values_from
    if (provider, resource, param.name) in NO_SOURCE:
        assert source is None
        return
    assert source is not None
    if source.scoped_objects:
        assert BUILTIN_PROVIDERS[provider].scoped_tokens is not None
        return
    parent = BUILTIN_PROVIDERS[provider].resources[source.resource]
    earlier = {p.name for p in declared.params[: declared.params.index(param)]}
    assert {p.name for p in parent.params if p.required} <= earlier


def test_calendly_takes_the_uuid_out_of_an_event_uri() -> None:
    """The documented event URI gives the invitees path its uuid, and it fits the pattern."""
    [param] = CALENDLY.resources["invitees"].params
    assert param.values_from is not None
    uris = [e["uri"] for e in fixture("calendly", "events_page1")["collection"]]
    values = [param.values_from.value_of(uri) for uri in uris]
    assert values[0] == "GBGBDCAADAEDCRZ2"
    assert all(v is not None and param.accepts(v) for v in values)
    assert param.values_from.value_of("https://api.calendly.com/users/ABC") is None


def test_a_source_names_one_kind_of_parent() -> None:
    with pytest.raises(ValueError, match="either"):
        ValuesFrom(resource="posts", scoped_objects=True)
    with pytest.raises(ValueError, match="one group"):
        ValuesFrom(resource="posts", capture=r"post_\d+")
