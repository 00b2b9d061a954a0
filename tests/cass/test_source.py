"""The CaSS source against the CaSS double: paging, partitioning, mapping, failures."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest

from ceredis.config import CassSettings, Settings
from ceredis.errors import ConfigError, SourceError
from ceredis.evidence import submitted, validate
from ceredis.scoring import evaluate
from ceredis.sources import kbac
from ceredis.sources.cass import check_uri, ms_to_iso, parse_uri
from ceredis.sources.files import bundled_cohort, read_evidence_file
from doubles.cass_double import CassDouble, Fault
from doubles.cass_fixtures import build_fixtures
from doubles.kbac import encrypt_value, generate_key
from tests.builders import settings_from

from .conftest import QUICK, record, records


def _ids(recs) -> list[str]:
    return [r.fields["evidenceId"] for r in recs]


def _search_starts(cass: CassDouble) -> list[int]:
    return [e.params["start"] for e in cass.requests("search") if "Person" not in e.params["q"]]


# -- paging ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "starts"),
    [(5, [0, 25]), (25, [0, 25]), (60, [0, 25, 50, 75]), (50, [0, 25, 50])],
    ids=["one-page", "exactly-one-page", "three-pages", "exact-multiple"],
)
def test_paging_until_an_empty_page(cass_factory, open_source, competencies, count, starts):
    cass = cass_factory(records("L0001", count) + records("L0002", 3), competencies=competencies)
    source = open_source(cass, uri=cass.source_uri + "&page_size=25")
    got = source.fetch("L0001")
    assert _ids(got) == [f"L0001-ev-{i:03d}" for i in range(count)]
    assert _search_starts(cass) == starts
    for entry in cass.requests("search"):
        assert (
            entry.method == "POST"
            and entry.form["signatureSheet"] == "<signature sheet: 1 entries>"
        )
        assert json.loads(entry.params["sort"])[0] == {
            "@version": {"order": "asc", "unmapped_type": "long"}
        }


def test_the_mapping_of_an_assertion_to_a_record(cass_factory, open_source, competencies):
    rec = record("L0001", 1, rawScore=Decimal("72.10"))
    cass = cass_factory([rec], competencies=competencies)
    (got,) = open_source(cass).fetch("L0001")
    assert got.fields == {
        **rec,
        "competencyId": f"{cass.base_url}data/schema.cassproject.org.0.4.Competency/"
        f"{competencies['5.3']}",
    }
    assert str(got.fields["rawScore"]) == "72.10"
    assert got.where.startswith(f"{cass.base_url}data/schema.cassproject.org.0.4.Assertion/")


def test_short_pages_from_permission_filtering_are_not_the_end(
    cass_factory, open_source, competencies
):
    recs = records("L0001", 30)
    cass = cass_factory(recs, competencies=competencies)
    learner = cass.fixtures.persons["L0001"]
    other = kbac.normalize_pem(cass.fixtures.persons.get("L0001"))
    # 40 objects mentioning the learner that the engine may not read, interleaved.
    hidden = []
    for i in range(40):
        hidden.append(
            {
                "@context": "https://schema.cassproject.org/0.4",
                "@id": f"{cass.base_url}data/schema.cassproject.org.0.4.Assertion/hidden-{i}/"
                f"{1_700_000_000_002 + i}",
                "@type": "Assertion",
                "owner": [other],
                "reader": [learner],
            }
        )
    cass.put(*hidden)
    source = open_source(cass, uri=cass.source_uri + "&page_size=10")
    assert len(source.fetch("L0001")) == 30
    pages = [e.results for e in cass.requests("search") if "Person" not in e.params["q"]]
    assert any(0 < n < 10 for n in pages[:-1])  # short pages came before the end
    assert pages[-1] == 0


def test_a_dropped_page_does_not_stop_paging(cass_factory, open_source, competencies):
    cass = cass_factory(records("L0001", 30), competencies=competencies)
    cass.add_fault(Fault.drop_results(keep=2, nth=2))  # the first assertion page
    source = open_source(cass, uri=cass.source_uri + "&page_size=10")
    got = source.fetch("L0001")
    assert len(got) == 22
    assert _search_starts(cass) == [0, 10, 20, 30]


def test_duplicates_across_pages_are_removed(cass_factory, open_source, competencies):
    recs = records("L0001", 25)
    cass = cass_factory(recs, competencies=competencies)
    # The second page waits; meanwhile an older object shifts the sorted list by one,
    # so page two repeats the last item of page one (Elasticsearch from/size paging).
    cass.add_fault(Fault.latency(0.4, route="search", nth=3))
    source = open_source(cass, uri=cass.source_uri + "&page_size=10")
    result: dict = {}
    thread = threading.Thread(target=lambda: result.setdefault("r", source.fetch("L0001")))
    thread.start()
    deadline = time.monotonic() + 5
    while len(cass.requests("search")) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    shifted = copy.deepcopy(cass.objects()[-1])
    shifted["@id"] = shifted["@id"].rsplit("/", 2)[0] + "/inserted-late/1600000000000"
    cass.put(shifted)
    thread.join(10)
    got = result["r"]
    assert _ids(got) == [f"L0001-ev-{i:03d}" for i in range(25)]


def test_chaos_order_gives_the_same_records(cass_factory, open_source, competencies):
    recs = [r for a in ("L0001", "L0002", "L0003") for r in records(a, 30)]
    calm = cass_factory(recs, competencies=competencies)
    wild = cass_factory(recs, competencies=competencies, chaos=True, seed=7)
    for cass in (calm, wild):
        source = open_source(cass, uri=cass.source_uri + "&page_size=7")
        assert list(source.agents()) == ["L0001", "L0002", "L0003"]
        for agent in ("L0001", "L0002", "L0003"):
            assert _ids(source.fetch(agent)) == [f"{agent}-ev-{i:03d}" for i in range(30)]


# -- the result window -----------------------------------------------------------------


def test_the_result_window_is_handled_by_partitioning(cass_factory, open_source, competencies):
    recs = []
    for i, comp in enumerate(["1.1", "2.2", "5.3"] * 50):
        recs.append(record("L0001", i, competency=comp))
    cass = cass_factory(recs, competencies=competencies, window=100)
    source = open_source(cass, uri=cass.source_uri + "&page_size=25&window=100")
    got = source.fetch("L0001")
    assert sorted(_ids(got)) == sorted(f"L0001-ev-{i:03d}" for i in range(150))
    queries = [e.params["q"] for e in cass.requests("search") if "Person" not in e.params["q"]]
    assert any("competency:" in q for q in queries)
    assert all(e.status == 200 for e in cass.requests("search"))  # never asked past the window


def test_one_competency_past_the_window_is_a_clear_error(cass_factory, open_source, competencies):
    cass = cass_factory(records("L0001", 120), competencies=competencies, window=100)
    source = open_source(cass, uri=cass.source_uri + "&page_size=50&window=100")
    with pytest.raises(SourceError, match="more than 100 assertions about one competency"):
        source.fetch("L0001")


def test_past_the_window_without_a_framework_is_a_clear_error(cass_factory, open_source):
    cass = cass_factory(records("L0001", 30), window=20)
    source = open_source(cass, uri=cass.source_uri.split("?")[0] + "?window=20&page_size=10")
    with pytest.raises(SourceError, match="no framework is configured"):
        source.fetch("L0001")


def test_agents_are_listed_past_the_window(cass_factory, open_source):
    recs = [record(f"L{i:04d}", 0) for i in range(23, 0, -1)]
    cass = cass_factory(recs, window=10)
    source = open_source(cass, uri=cass.source_uri + "&page_size=5&window=10")
    assert list(source.agents()) == [f"L{i:04d}" for i in range(1, 24)]


# -- what cannot be read -------------------------------------------------------------


def _plain_double(recs, competencies, **options) -> CassDouble:
    return CassDouble.from_evidence(recs, competencies=competencies, encrypted=False, **options)


def test_missing_malformed_and_undecryptable_payloads_are_invalid_records(
    cass_factory, open_source, competencies, referential, engine_key
):
    cass = cass_factory(records("L0001", 4), competencies=competencies)
    objs = [o for o in cass.objects() if o["@type"] == "Assertion"]
    broken = copy.deepcopy(objs[:3])
    del broken[0]["evidence"]
    broken[1]["evidence"] = [
        encrypt_value(
            "not json {",
            broken[1]["owner"],
            [cass.fixtures.persons["L0001"], engine_key.public_pem],
        )
    ]
    secret = broken[2]["evidence"][0]["secret"]
    broken[2]["evidence"][0]["secret"] = [*secret[:-1], secret[0]]  # the engine's is wrong
    cass.put(*broken)
    got = open_source(cass).fetch("L0001")
    assert len(got) == 4
    problems = {r.where.split(" (", 1)[0]: r.where for r in got if "(" in r.where}
    assert problems == {
        broken[0]["@id"]: f"{broken[0]['@id']} (the assertion has no evidence payload)",
        broken[1]["@id"]: f"{broken[1]['@id']} (the evidence payload is not JSON)",
        broken[2]["@id"]: f"{broken[2]['@id']} (the evidence payload cannot be decrypted: the "
        "engine's key cannot unwrap the field's secret (RSA-OAEP-SHA1 failed))",
    }
    invalid = [r for r in got if "(" in r.where]
    assert all("rawScore" not in r.fields and r.fields["agentId"] == "L0001" for r in invalid)
    assert all(r.fields["timestamp"] == "2026-03-01T08:00:00+00:00" for r in invalid)
    result = evaluate("L0001", got, referential)
    assert result["status"] == "ERROR"
    for at_id in problems:
        assert at_id in result["error"]


def test_a_payload_that_is_not_an_object_is_invalid(open_source, competencies):
    with _plain_double(records("L0001", 1), competencies) as cass:
        obj = next(o for o in cass.objects() if o["@type"] == "Assertion")
        cass.put({**obj, "evidence": ["[1, 2]"]})
        (got,) = open_source(cass).fetch("L0001")
    assert got.where.endswith("(the evidence payload is not a JSON object)")


def test_anonymous_reads_lose_the_encrypted_fields_with_a_clear_error(
    cass_factory, open_source, competencies
):
    cass = cass_factory(records("L0001", 2), competencies=competencies)
    source = open_source(cass, key=False)
    with pytest.raises(SourceError) as err:
        source.fetch("L0001")
    message = str(err.value)
    assert "came back without its subject" in message
    assert "set CEREDIS_CASS_KEY to the engine's private key" in message
    assert cass.requests("search")[-1].form["signatureSheet"] == "<signature sheet: 0 entries>"


def test_a_key_that_is_not_a_reader_gets_a_clear_error(cass_factory, open_source, competencies):
    stranger = generate_key()
    cass = cass_factory(records("L0001", 2), competencies=competencies, engine_key=stranger)
    with pytest.raises(SourceError, match=r"Add the engine's key \(fingerprint [0-9a-f]{32}\)"):
        open_source(cass).fetch("L0001")


def test_assertions_about_someone_else_are_dropped(open_source, competencies):
    recs = records("L0001", 2) + records("L0002", 2)
    with _plain_double(recs, competencies) as cass:
        l1, l2 = cass.fixtures.persons["L0001"], cass.fixtures.persons["L0002"]
        obj = next(o for o in cass.objects() if o.get("subject") == l2)
        # L0001 is the *agent* (the claimant) of an assertion about L0002.
        payload = json.loads(obj["evidence"][0]) | {"evidenceId": "L0002-ev-claimed"}
        cass.put(
            {
                **obj,
                "@id": obj["@id"].replace("/1700", "9/1700"),
                "agent": l1,
                "evidence": [json.dumps(payload)],
            }
        )
        source = open_source(cass)
        assert _ids(source.fetch("L0001")) == ["L0001-ev-000", "L0001-ev-001"]
        assert sorted(_ids(source.fetch("L0002"))) == [
            "L0002-ev-000",
            "L0002-ev-001",
            "L0002-ev-claimed",
        ]


def test_mixed_owner_spellings_and_legacy_contexts(cass_factory, open_source, competencies):
    cass = cass_factory(records("L0001", 4), competencies=competencies)
    objs = copy.deepcopy(cass.objects())

    def legacy_owner(value):
        if isinstance(value, dict):
            for name in ("owner", "reader"):
                if name in value:
                    value["@" + name] = value.pop(name)
            for v in value.values():
                legacy_owner(v)
        elif isinstance(value, list):
            for v in value:
                legacy_owner(v)

    person = next(o for o in objs if o["@type"] == "Person")
    legacy_owner(person)
    assertions = [o for o in objs if o["@type"] == "Assertion"]
    legacy_owner(assertions[0])
    assertions[1]["@context"] = "http://schema.eduworks.com/cass/0.2"
    assertions[1]["@type"] = "http://schema.eduworks.com/cass/0.2/assertion"
    assertions[2]["@context"] = "https://schema.cassproject.org/0.3"
    cass.put(person, *assertions[:3])
    assert _ids(open_source(cass).fetch("L0001")) == [f"L0001-ev-{i:03d}" for i in range(4)]


def test_timestamp_falls_back_to_the_assertion_date(open_source, competencies):
    rec = record("L0001", 1)
    del rec["timestamp"]
    with _plain_double([rec], competencies) as cass:
        obj = next(o for o in cass.objects() if o["@type"] == "Assertion")
        cass.put({**obj, "assertionDate": 1700000000123})
        (got,) = open_source(cass).fetch("L0001")
    assert got.fields["timestamp"] == "2023-11-14T22:13:20.123+00:00"
    assert ms_to_iso("1700000000000") == "2023-11-14T22:13:20+00:00"
    assert ms_to_iso("soon") is None and ms_to_iso(True) is None


def test_an_unknown_learner_has_no_evidence(cass_factory, open_source, competencies):
    cass = cass_factory(records("L0001", 1), competencies=competencies)
    assert open_source(cass).fetch("L9999") == []


def test_two_persons_with_one_identifier_is_an_error(open_source, competencies):
    with _plain_double(records("L0001", 1) + records("L0002", 1), competencies) as cass:
        people = [o for o in cass.objects() if o["@type"] == "Person"]
        cass.put({**people[1], "identifier": "L0001"})
        with pytest.raises(
            SourceError, match="2 Persons with different keys have identifier='L0001'"
        ):
            open_source(cass).fetch("L0001")


def test_an_expired_sheet_is_resigned_after_learning_the_server_clock(
    cass_factory, open_source, competencies
):
    ahead = time.time() + 3600  # the server's clock is an hour ahead: our sheet is expired
    cass = cass_factory(
        records("L0001", 3),
        competencies=competencies,
        kbac="strict",
        wallclock=lambda: ahead + (time.time() - ahead + 3600) - 3600 + 3600,
    )
    source = open_source(cass)
    assert len(source.fetch("L0001")) == 3
    statuses = [e.status for e in cass.journal]
    assert statuses[0] == 419 and statuses[1:] == [200] * (len(statuses) - 1)
    assert cass.journal[1].route == "ping"


def test_strict_kbac_accepts_our_signatures(cass_factory, open_source, competencies):
    cass = cass_factory(records("L0001", 3), competencies=competencies, kbac="strict")
    source = open_source(cass)
    source.ping()
    assert len(source.fetch("L0001")) == 3


# -- faults through the source ----------------------------------------------------------


def test_faults_are_absorbed_by_retries(cass_factory, open_source, competencies):
    cass = cass_factory(records("L0001", 30), competencies=competencies)
    # One fault on each logical request (the Person lookup, then four pages).
    cass.add_fault(
        Fault.proxy(503, route="search", nth=1),
        Fault.truncate(after_bytes=40, route="search", nth=3),
        Fault.reset(after_bytes=100, route="search", nth=5),
        Fault.bad_json(route="search", nth=7),
        Fault.cass_429(retry_after=1, route="search", nth=9),
    )
    source = open_source(cass, uri=cass.source_uri + "&page_size=10", env=QUICK)
    assert len(source.fetch("L0001")) == 30
    assert source.stats()["retries"] == 5
    assert [e.status for e in cass.requests("search")] == [
        503,
        200,
        200,
        200,
        200,
        200,
        200,
        200,
        429,
        200,
    ]


def test_ping_gives_clear_start_up_errors(cass_factory, open_source, competencies):
    cass = cass_factory(records("L0001", 1), competencies=competencies)
    info = open_source(cass).ping()
    assert info["competencies"] == len(competencies)
    wrong_prefix = cass.source_uri.replace("/?", "/cass/?")
    with pytest.raises(SourceError, match=r"cannot reach CaSS: .*HTTP 404"):
        open_source(cass, uri=wrong_prefix).ping()
    missing = cass.source_uri.split("?")[0] + "?framework=0000-not-there"
    with pytest.raises(SourceError, match="framework '0000-not-there' not found"):
        open_source(cass, uri=missing).ping()
    down = CassDouble()
    uri = down.source_uri
    down.stop()
    with pytest.raises(SourceError, match="cannot reach CaSS"):
        open_source(down, uri=uri).ping()


# -- configuration ---------------------------------------------------------------------


def test_check_uri_accepts_good_uris_and_names_what_is_wrong(tmp_path):
    assert (
        check_uri("cass+https://cass.ceredis.net/", Settings()) == "cass+https://cass.ceredis.net/"
    )
    assert check_uri("cass+http://127.0.0.1:8080/cass/api/?framework=abc-1", Settings()) == (
        "cass+http://127.0.0.1:8080/cass/"
    )
    config = parse_uri("cass+https://h:8443/x/?page_size=7", CassSettings(framework="f-1"))
    assert (config.base_url, config.page_size, config.framework) == (
        "https://h:8443/x/api/",
        7,
        "f-1",
    )
    bad = {
        "https://h/": "not a CaSS source URI",
        "cass+https://user:pw@h/": "must not contain user:password",
        "cass+https:///x": "has no host",
        "cass+https://h/?frame=1": "unknown option 'frame'",
        "cass+https://h/?page_size=zero": "page_size='zero' is not an integer",
        "cass+https://h/?page_size=20000": "out of range",
        "cass+https://h/?framework=a b": "neither a GUID nor an http(s) URL",
        "cass+https://h:99999/": "the port: a number up to 65535",
    }
    for uri, message in bad.items():
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            check_uri(uri, Settings())
    with pytest.raises(ConfigError, match="not a readable file"):
        check_uri(
            "cass+https://h/", settings_from({"CEREDIS_CASS_KEY": str(tmp_path / "none.pem")})
        )


# -- the same cohort from a file and from CaSS -----------------------------------------


@pytest.mark.parametrize("encrypted", [True, False], ids=["encrypted", "plain"])
def test_the_bundled_cohort_scores_identically_from_a_file_and_from_cass(
    encrypted, open_source, competencies, referential, engine_key
):
    by_agent: dict[str, list] = defaultdict(list)
    plain: list[dict] = []
    for _line, agent, raw in read_evidence_file(bundled_cohort()):
        if agent is not None:
            by_agent[agent].append(raw)
            plain.append(dict(raw.fields))
    agents = sorted(by_agent)[:: 1 if encrypted else 4]
    chosen = [r for r in plain if r["agentId"] in set(agents)]
    with CassDouble.from_evidence(
        chosen, competencies=competencies, engine_key=engine_key, encrypted=encrypted
    ) as cass:
        source = open_source(cass)
        assert list(source.agents()) == agents
        for agent in agents:
            from_file = evaluate(agent, by_agent[agent], referential)
            from_cass = evaluate(agent, source.fetch(agent), referential)
            if from_file["status"] == "ERROR":
                assert from_cass["status"] == "ERROR"
            else:
                assert from_cass == from_file, agent


def test_fixtures_keep_invalid_records_invalid(competencies, referential, open_source):
    bad = [
        record("L0001", 1, rawScore="85"),
        record("L0001", 2, competency="9.9"),
        record("L0001", 3, rawScore=Decimal("NaN")),
        record("L0001", 4, evidenceType="P9"),
    ]
    with _plain_double(bad, competencies) as cass:
        got = open_source(cass).fetch("L0001")
    _evidence, problems = validate("L0001", [submitted(r) for r in got], referential)
    assert len(problems) == 4


def test_the_fixture_builder_is_fast_enough_for_benchmarks(competencies):
    recs = [record(f"L{a:05d}", e) for a in range(2000) for e in range(5)]
    start = time.monotonic()
    fixtures = build_fixtures(
        recs, id_base="http://127.0.0.1:1/api/", competencies=competencies, encrypted=False
    )
    assert time.monotonic() - start < 5
    assert len(fixtures.persons) == 2000
    assert not fixtures.skipped


def test_records_without_an_agent_are_reported_not_loaded(competencies):
    fixtures = build_fixtures(
        [{"evidenceId": "x"}], id_base="http://h/api/", competencies=competencies, encrypted=False
    )
    assert fixtures.skipped == ["record #1: no agentId, cannot be attributed"]


def test_sample_objects_load_into_the_double():
    samples = Path(__file__).parent / "samples"
    with CassDouble() as cass:
        names = ("assertion.encrypted", "competency", "framework", "person")
        cass.load_files(*(samples / f"{n}.json" for n in names))
        assert {o["@type"] for o in cass.objects()} == {
            "Assertion",
            "Competency",
            "Framework",
            "Person",
        }
