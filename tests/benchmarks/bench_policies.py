"""Benchmark: policy decisions per second on a page of 100 mixed records.

Run: ``python tests/benchmarks/bench_policies.py [--repeats R]``. Not a test
(pytest does not collect ``bench_*.py``). Reports the best of several repeats
for the engine and for two yardsticks over the same records in the same run,
so the ratios are comparable across machines: a pass-through loop (what a page
costs with no policy at all) and a copy-through loop (one shallow dict copy
per record, the least a serializer does; the engine's baseline in the JSON).
A decision is one record judged. Writes ``var/bench/bench_policies.json``
(tests/benchmarks/contract.py); takes about 10 seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import contract

from policies import (
    AccessContext,
    AgeHint,
    CallerClass,
    Field,
    Identifier,
    PageDecision,
    PolicyEngine,
    Record,
    Subject,
    Visibility,
    email_identifier,
    handle_identifier,
    load_policy,
    provider_user_identifier,
)

PAGE_SIZE = 100
REPEATS = 7
PAGES_PER_REPEAT = 200
KEY = b"bench-customer-key"


def mixed_page() -> list[Record]:
    visibilities = [Visibility.PUBLIC, Visibility.DIRECT, Visibility.PUBLIC, Visibility.PRIVATE]
    records = []
    for n in range(PAGE_SIZE):
        subject = Subject(
            identifiers=(
                provider_user_identifier("facebook", str(1000 + n)),
                handle_identifier("facebook", f"user{n}"),
                email_identifier(f"user{n}@example.com"),
            ),
            age=AgeHint(birth_date=date(2012, 1, 1)) if n % 25 == 0 else None,
        )
        data = {
            "author": Field(f"User {n}", "user.name"),
            "text": Field("hello there", "user.content.public"),
            "where": Field("Paris", "user.location.imprecise"),
        }
        if n % 10 == 0:
            data["mobile"] = Field("+12125550100", "user.contact.phone_number", sms_consent=True)
        if n % 7 == 0:
            data["health"] = Field("x", "user.health_and_medical")
        records.append(
            Record(
                id=f"r{n}",
                customer_id="cust-1",
                connection_id="conn-1",
                provider="facebook",
                resource="comments",
                visibility=visibilities[n % len(visibilities)],
                subjects=(subject,),
                data=data,
            )
        )
    return records


def context(purpose: str, caller: CallerClass) -> AccessContext:
    suppressed = {email_identifier("user3@example.com")}

    def pseudonymize(identifier: Identifier) -> str:
        return hmac.new(KEY, str(identifier).encode(), hashlib.sha256).hexdigest()[:32]

    return AccessContext(
        service_id="svc",
        caller_class=caller,
        granted_purposes=frozenset({"essential", "analytics"}),
        entitled_customers=frozenset({"cust-1"}),
        connection_customer_id="cust-1",
        purpose=purpose,
        now=datetime(2025, 6, 15, tzinfo=UTC),
        consented=lambda _identifier: False,
        suppressed=lambda identifier, _purpose: identifier in suppressed,
        pseudonymize=pseudonymize,
    )


def pass_through(records: list[Record], _ctx: AccessContext) -> PageDecision:
    """The baseline: what a page costs with no policy at all."""
    page = PageDecision()
    for record in records:
        page.kept.append(record)
    return page


def copy_through(records: list[Record], _ctx: AccessContext) -> PageDecision:
    """A second yardstick: one shallow dict copy per record, the least a serializer does."""
    page = PageDecision()
    for record in records:
        page.kept.append(record)
        page.categories_released.update(f.category for f in dict(record.data).values())
    return page


def best_rate(
    run: Callable[[list[Record], AccessContext], PageDecision],
    page: list[Record],
    make_ctx: Callable[[], AccessContext],
    repeats: int = REPEATS,
) -> float:
    best = 0.0
    for _ in range(repeats):
        contexts = [make_ctx() for _ in range(PAGES_PER_REPEAT)]  # one context per request
        start = time.perf_counter()
        for ctx in contexts:
            run(page, ctx)
        elapsed = time.perf_counter() - start
        best = max(best, PAGES_PER_REPEAT * len(page) / elapsed)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=REPEATS, help="best of this many")
    repeats = parser.parse_args().repeats
    engine = PolicyEngine(load_policy())
    page = mixed_page()
    rows = []
    print(f"page of {PAGE_SIZE} mixed records, best of {repeats} x {PAGES_PER_REPEAT} pages")
    for label, purpose, caller in [
        ("service, internal", "essential.service", CallerClass.INTERNAL),
        ("support, third party", "essential.service.operations.support", CallerClass.THIRD_PARTY),
        ("analytics (pseudonyms)", "analytics.reporting", CallerClass.INTERNAL),
    ]:

        def make_ctx(purpose: str = purpose, caller: CallerClass = caller) -> AccessContext:
            return context(purpose, caller)

        baseline = best_rate(pass_through, page, make_ctx, repeats)
        copying = best_rate(copy_through, page, make_ctx, repeats)
        engine_rate = best_rate(engine.decide_page, page, make_ctx, repeats)
        print(
            f"{label:24} engine {engine_rate:>9,.0f}/s | pass-through {baseline:>11,.0f}/s"
            f" ratio {engine_rate / baseline:.4f} | copy {copying:>10,.0f}/s"
            f" ratio {engine_rate / copying:.3f}"
        )
        copy_name = f"copy-through records/s, {label}"
        rows += [
            contract.row(f"pass-through records/s, {label}", baseline, "decisions/s"),
            contract.row(copy_name, copying, "decisions/s"),
            contract.row(
                f"policy decisions/s, {label}", engine_rate, "decisions/s", (copy_name, copying)
            ),
        ]
    path = contract.write("policies", rows)
    print(f"wrote {path.relative_to(contract.REPO)}")


if __name__ == "__main__":
    main()
