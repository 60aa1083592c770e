"""An unchanged re-run: the version a release registers is already serving, with verified evidence.

Registration is idempotent by release key (data, config, code, lock and base model: `tasks.sign`),
so a re-run of identical inputs finds the version it made before. If that version is still
the champion, running the gates, verdict, model card, approval, promotion and canary again
would only re-derive what its signed evidence already says. The release then stops after
registration, but only when everything those steps read beyond the release key is what the
evidence was made under, checked as strictly as an alias move checks it:

- the serving alias names this version, and no alias of the model moved outside attestflow
  (`attestflow.alias_drift`);
- `attestflow.verify.verify_model_uri` with every requirement (provenance, gates, approval),
  the check each alias move runs, passes with the current trusted key and requires a PASSED
  gate verdict under the *current* gate policy's digest (a changed policy gates again);
- the newest canary verdict passed, after the approval, and on the sample configured now
  (a crash between the alias move and the canary, or new canary data, runs them again).

Anything else (a new version, another champion, evidence that does not verify, a changed
policy or sample) releases in full, as before. The decision is audited as one
``release_unchanged`` entry naming the evidence files it verified.
"""

from __future__ import annotations

from pathlib import Path

from attestflow.alias_drift import alias_drift
from attestflow.context import ReleaseContext
from attestflow.evidence import APPROVAL, CANARY, canary_sample_ref
from attestflow.evidence_check import REQUIREMENTS
from attestflow.evidence_read import evidence_files, read_evidence
from attestflow.outcomes import UnchangedRelease
from attestflow.progress import run_logger
from attestflow.records import RegistrationRecord
from attestflow.registry import Registry
from attestflow.verify import verify_model_uri


def canary_problem(folder: Path, public_key: Path, sample: Path | None) -> str | None:
    """Why the folder's newest canary verdict does not stand for its approval on `sample`, or None."""
    ev = read_evidence(folder, public_key)
    approvals, canaries = ev.of(APPROVAL), ev.of(CANARY)
    after = [c for c in canaries if approvals and c.time >= approvals[-1].time]
    if not after:
        return "no canary verdict after its approval"
    newest = after[-1].predicate
    if newest.get("result") != "PASSED":
        return f"its newest canary verdict is {newest.get('result')}"
    try:
        now = canary_sample_ref(sample)
    except OSError as e:
        return f"the canary sample cannot be read ({e.strerror})"
    if newest.get("sample") != now:
        return "the canary sample differs from the one its verdict scored"
    return None


def unchanged_release(ctx: ReleaseContext, registered: RegistrationRecord) -> UnchangedRelease | None:
    """The audited record of an unchanged release when `registered` is the verified champion; None: release in full."""
    cfg = ctx.cfg
    if not registered.reused or registered.resumed:
        return None
    log = run_logger(__name__)
    name, alias, version = cfg.model_name, cfg.promote.alias, registered.version
    registry = Registry(ctx.tracking_uri)
    policy = ctx.policy.digest().value
    with ctx.audit.locked(name):
        champion = registry.alias_version(name, alias)
        if champion != version:
            log.info("releasing v%s in full: @%s is v%s", version, alias, champion)
            return None
        drift = alias_drift(
            name, alias=alias, previous_alias=cfg.promote.previous_alias, registry=registry, audit=ctx.audit
        )
        if drift:
            log.info("releasing v%s in full: %s", version, "; ".join(map(str, drift)))
            return None
        seen: dict[str, str] = {}
        problems: list[str] = []

        def inspect(folder: Path) -> None:
            seen.update(evidence_files(folder))
            if (why := canary_problem(folder, ctx.public_key, cfg.canary.sample)) is not None:
                problems.append(why)

        result = verify_model_uri(
            registered.model_uri,
            ctx.tracking_uri,
            ctx.public_key,
            use=inspect,
            require=REQUIREMENTS,
            policy_digest=policy,
        )
        problems = result.failures + problems
        if problems:
            log.info("releasing v%s in full: %s", version, "; ".join(problems))
            return None
        unchanged = UnchangedRelease(
            name, version, alias, registered.tags.get("release_key", ""), f"sha256:{policy}", seen
        )
        ctx.record(unchanged)
    return unchanged
