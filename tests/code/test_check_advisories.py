"""The advisories check: OSV range semantics, the allow-list, and the offline update never touching the network."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from attestflow.checks import advisories
from attestflow.checks.advisories import affects, fixed_in, run, update
from attestflow.checks.core import CheckContext
from attestflow.errors import BadInputError, UnavailableError

LOCK = """\
# a lock as uv writes it
demo-lib==1.4.2 \\
    --hash=sha256:aaaa \\
    --hash=sha256:bbbb
    # via attestflow
Other_Pkg==2.0.0 \\
    --hash=sha256:cccc
"""


def record(vuln_id: str, name: str, events: list[dict[str, str]], **extra: Any) -> dict[str, Any]:
    """An OSV record for one PyPI package with one ECOSYSTEM range."""
    affected = {
        "package": {"ecosystem": "PyPI", "name": name},
        "ranges": [{"type": "ECOSYSTEM", "events": events}],
    }
    return {"id": vuln_id, "affected": [affected], **extra}


def repo(tmp_path: Path, *records: dict[str, Any], allow: str | None = None) -> CheckContext:
    """A checked tree with the lock above, an advisory folder of `records` and an optional allow-list."""
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "requirements.lock").write_text(LOCK)
    folder = tmp_path / "configs" / "advisories"
    folder.mkdir(parents=True)
    for r in records:
        (folder / f"{r['id']}.json").write_text(json.dumps(r))
    if allow is not None:
        (tmp_path / "configs" / "advisories-allow.yaml").write_text(allow)
    return CheckContext(root=tmp_path, settings={"installed": False})


def test_a_fixture_advisory_for_a_pinned_version_is_a_finding_naming_the_fix(tmp_path: Path) -> None:
    ctx = repo(tmp_path, record("GHSA-demo-0001", "Demo_Lib", [{"introduced": "0"}, {"fixed": "1.4.3"}]))
    [finding] = run(ctx)
    assert finding.check == "advisories"
    assert "GHSA-demo-0001" in finding.message and "demo-lib 1.4.2" in finding.message
    assert "1.4.3" in finding.message and "1.4.3" in finding.fix and "make lock" in finding.fix
    assert finding.path == "requirements.lock" and finding.line == 2


def test_a_version_outside_every_range_is_clean(tmp_path: Path) -> None:
    ctx = repo(
        tmp_path,
        record("OSV-1", "demo-lib", [{"introduced": "0"}, {"fixed": "1.4.2"}]),
        record("OSV-2", "demo-lib", [{"introduced": "1.5"}]),
        record("OSV-3", "other-pkg", [{"introduced": "1.0"}, {"last_affected": "1.9.9"}]),
        record("OSV-4", "demo-lib", [{"introduced": "0"}], withdrawn="2024-01-01T00:00:00Z"),
    )
    assert run(ctx) == []


@pytest.mark.parametrize(
    ("events", "version", "expected"),
    [
        ([{"introduced": "0"}, {"fixed": "1.10"}], "1.9", True),  # versions compare as versions, not strings
        ([{"introduced": "0"}, {"fixed": "1.10"}], "1.10", False),
        ([{"introduced": "1.0"}, {"last_affected": "1.2"}], "1.2", True),
        ([{"introduced": "1.0"}, {"last_affected": "1.2"}], "1.2.1", False),
        ([{"introduced": "1.0"}, {"fixed": "1.2"}, {"introduced": "2.0"}, {"fixed": "2.1"}], "1.5", False),
        ([{"fixed": "2.1"}, {"introduced": "2.0"}, {"introduced": "1.0"}, {"fixed": "1.2"}], "2.0.5", True),
        ([{"introduced": "1.0"}], "0.9", False),
        ([{"introduced": "2.0rc1"}, {"fixed": "2.0"}], "2.0rc2", True),
    ],
)
def test_range_events_follow_osv_semantics_in_version_order(
    events: list[dict[str, str]], version: str, expected: bool
) -> None:
    assert affects(record("X", "p", events), "p", version) is expected


def test_an_explicit_versions_list_matches_and_other_ecosystems_do_not() -> None:
    listed = {
        "id": "X",
        "affected": [{"package": {"ecosystem": "PyPI", "name": "p"}, "versions": ["1.0", "1.1"]}],
    }
    npm = {"id": "Y", "affected": [{"package": {"ecosystem": "npm", "name": "p"}, "versions": ["1.1"]}]}
    assert affects(listed, "p", "1.1.0") and not affects(listed, "p", "1.2")
    assert not affects(npm, "p", "1.1")


def test_the_fix_named_is_the_lowest_fixed_version_above_the_pinned_one() -> None:
    r = record("X", "p", [{"introduced": "1.0"}, {"fixed": "1.2"}, {"introduced": "2.0"}, {"fixed": "2.3"}])
    assert fixed_in(r, "p", "2.1") == "2.3"
    assert fixed_in(record("X", "p", [{"introduced": "0"}]), "p", "1.0") is None


def test_an_allowed_advisory_is_clean_until_its_entry_expires(tmp_path: Path) -> None:
    vuln = record(
        "GHSA-demo-0001", "demo-lib", [{"introduced": "0"}, {"fixed": "1.4.3"}], aliases=["CVE-2099-1"]
    )
    allow = "allow:\n  - {id: CVE-2099-1, package: Demo-Lib, reason: not reachable from our code, expires: 2999-01-01}\n"
    assert run(repo(tmp_path / "a", vuln, allow=allow)) == []

    expired = allow.replace("2999-01-01", "2000-01-01")
    [finding] = run(repo(tmp_path / "b", vuln, allow=expired))
    assert "GHSA-demo-0001" in finding.message and "expired on 2000-01-01" in finding.message


def test_an_expired_allow_list_entry_that_matches_nothing_is_still_a_finding(tmp_path: Path) -> None:
    allow = "allow:\n  - {id: GHSA-gone, package: demo-lib, reason: old, expires: 2001-02-03}\n"
    [finding] = run(repo(tmp_path, allow=allow))
    assert "GHSA-gone" in finding.message and "2001-02-03" in finding.message
    assert finding.path == "configs/advisories-allow.yaml"


@pytest.mark.parametrize(
    "entry", ["{id: X, package: demo-lib, expires: 2999-01-01}", "{id: X, package: demo-lib, reason: why}"]
)
def test_an_allow_list_entry_without_reason_or_expiry_is_bad_input(tmp_path: Path, entry: str) -> None:
    with pytest.raises(BadInputError, match=r"advisories-allow\.yaml"):
        run(repo(tmp_path, allow=f"allow:\n  - {entry}\n"))


def test_a_malformed_advisory_record_is_bad_input(tmp_path: Path) -> None:
    ctx = repo(tmp_path)
    (tmp_path / "configs" / "advisories" / "broken.json").write_text("{not json")
    with pytest.raises(BadInputError, match=r"broken\.json"):
        run(ctx)


def test_installed_distributions_are_matched_too(tmp_path: Path) -> None:
    ctx = repo(tmp_path, record("OSV-PYTEST", "pytest", [{"introduced": "0"}]))
    assert run(ctx) == []  # not in the lock
    [finding] = run(CheckContext(root=tmp_path, settings={"installed": True}))
    assert "pytest" in finding.message and "(installed)" in finding.message and finding.path is None


def test_update_queries_every_pin_and_writes_each_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "requirements.lock").write_text(LOCK)
    calls: list[tuple[str, Any]] = []

    def fake(url: str, body: dict[str, Any] | None = None) -> Any:
        calls.append((url, body))
        if url.endswith("/querybatch"):
            assert body is not None
            if "page_token" in body["queries"][0]:
                return {"results": [{"vulns": [{"id": "PYSEC-2"}]}]}
            return {"results": [{"vulns": [{"id": "GHSA-1"}], "next_page_token": "t"}, {}]}
        return {"id": url.rsplit("/", 1)[1], "affected": []}

    monkeypatch.setattr(advisories, "_request", fake)
    assert update(tmp_path / "adv", tmp_path / "requirements.lock") == 2
    assert sorted(p.name for p in (tmp_path / "adv").iterdir()) == ["GHSA-1.json", "PYSEC-2.json"]
    first = calls[0][1]
    assert first is not None and [q["package"]["name"] for q in first["queries"]] == ["demo-lib", "other-pkg"]
    assert first["queries"][0]["version"] == "1.4.2"


def test_update_without_a_network_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "requirements.lock").write_text(LOCK)
    with pytest.raises(UnavailableError, match="OSV API"):
        update(tmp_path / "adv", tmp_path / "requirements.lock", api="http://127.0.0.1:9")
