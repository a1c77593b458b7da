"""A portability request's walk of one connection: every resource, every page, every parent.

A resource whose required parameters say where their values come from
(providers.base, ``Param.values_from``) is fetched once per value: per record
of the parent resource (the sandbox's ``comments`` per post), or per object
the connection holds a scoped token for (a Facebook Page). Parent records are
the ones the policies released for the request's purpose, read through the
records service like every other page, so a parent the policies drop is not
walked either.

Everything is bounded, and what a bound cut off is named in ``not_fetched``:
``MAX_PAGES`` pages per resource and parameter set, ``MAX_PARENTS`` parameter
sets per resource (the parents beyond it are listed by id, up to
``MAX_NAMED``). A resource whose parameter has no declared source (only a
caller can name it) is listed too, and so is one parent whose fetch the
provider refused; a rate limit or an outage fails the step instead, so the
runner tries the request again rather than hand over a bundle with holes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.callers import Caller
from gateway.connections import Connection, ConnectionStore
from gateway.errors import UpstreamError, UpstreamRateLimited, UpstreamUnavailable
from gateway.records import RecordsQuery, RecordsService
from policies import Record
from providers.base import Provider, Resource, ValuesFrom

__all__ = ["MAX_NAMED", "MAX_PAGES", "MAX_PARENTS", "ConnectionWalk"]

MAX_PAGES = 50  # per resource and parameter set: a bound, not an expected size
MAX_PARENTS = 100  # parameter sets (parents) per child resource and connection
MAX_NAMED = 50  # parents left out that not_fetched names by id

Params = dict[str, str]


@dataclass(slots=True)
class ConnectionWalk:
    """Fetches every resource of one connection for one purpose; results in ``records``."""

    records_service: RecordsService
    connections: ConnectionStore
    caller: Caller
    purpose: str
    connection: Connection
    provider: Provider
    records: list[Record] = field(default_factory=list)
    not_fetched: list[dict[str, Any]] = field(default_factory=list)
    _pages: dict[tuple[str, tuple[tuple[str, str], ...]], list[Record]] = field(
        default_factory=dict
    )

    async def run(self) -> None:
        for resource in self.provider.resources.values():
            for params in await self._parameter_sets(resource):
                self.records.extend(await self._released(resource, params))

    async def _parameter_sets(self, resource: Resource) -> list[Params]:
        """Every set of required parameters to fetch ``resource`` with, bounded."""
        sets: list[Params] = [{}]
        for param in resource.params:
            if not param.required:
                continue
            source = param.values_from
            if source is None:
                self._skip(resource, f"needs parameter {param.name}, which has no declared source")
                return []
            grown: list[Params] = []
            unfit = 0
            for chosen in sets:
                for value in await self._values(resource, source, chosen):
                    if param.accepts(value):
                        grown.append({**chosen, param.name: value})
                    else:
                        unfit += 1
            if unfit:
                self._skip(
                    resource,
                    f"{unfit} value(s) of {param.name} do not fit its pattern",
                    values_left_out=unfit,
                )
            sets = grown
        if len(sets) > MAX_PARENTS:
            cut = sets[MAX_PARENTS:]
            self._skip(
                resource,
                f"bounded at {MAX_PARENTS} parents",
                parents_walked=MAX_PARENTS,
                parents_left_out=len(cut),
                left_out=cut[:MAX_NAMED],
            )
            sets = sets[:MAX_PARENTS]
        return sets

    async def _values(self, child: Resource, source: ValuesFrom, chosen: Params) -> list[str]:
        """The values ``source`` gives, with the parameters already chosen for the child."""
        if source.scoped_objects:
            return await self.connections.scoped.object_ids(self.connection.id)
        parent = self.provider.resources.get(source.resource)
        if parent is None:
            self._skip(child, f"its parent resource {source.resource} is not declared")
            return []
        needs = [p.name for p in parent.params if p.required]
        if any(name not in chosen for name in needs):
            self._skip(child, f"its parent {parent.name} needs parameters not chosen before it")
            return []
        records = await self._released(parent, {name: chosen[name] for name in needs})
        values: list[str] = []
        for record in records:
            value = source.value_of(record.id)
            if value is not None and value not in values:
                values.append(value)
        return values

    async def _released(self, resource: Resource, params: Params) -> list[Record]:
        """Every page of ``resource`` with ``params`` as released for the purpose; fetched once."""
        key = (resource.name, tuple(sorted(params.items())))
        if key in self._pages:
            return self._pages[key]
        released: list[Record] = []
        cursor: str | None = None
        try:
            for _ in range(MAX_PAGES):
                page = await self.records_service.read(
                    self.caller,
                    RecordsQuery(
                        connection_id=self.connection.id,
                        resource=resource.name,
                        purpose=self.purpose,
                        limit=str(resource.pagination.max_limit),
                        cursor=cursor,
                        params=params,
                    ),
                )
                released.extend(page.records)
                cursor = page.next_cursor
                if cursor is None:
                    break
            else:
                self._skip(resource, f"more than {MAX_PAGES} pages", params=params)
        except (UpstreamRateLimited, UpstreamUnavailable):
            raise  # transient: the runner retries the whole request
        except UpstreamError as error:
            if not params:
                raise  # a whole resource refused is the request's failure, as before
            self._skip(resource, f"the provider refused it ({error.problem})", params=params)
        self._pages[key] = released
        return released

    def _skip(self, resource: Resource, reason: str, **detail: Any) -> None:
        self.not_fetched.append(
            {
                "connection_id": self.connection.id,
                "resource": resource.name,
                "reason": reason,
                **{k: v for k, v in detail.items() if v},
            }
        )
