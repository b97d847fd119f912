"""Fingerprints: stable, canonical, and sensitive to every identifying part."""

import hashlib
import json

from incidents.fingerprint import fingerprint, tag_identity


def test_value_is_sha256_of_canonical_json():
    doc = {"identifying": {"db": "primary"}, "source": "s", "tenant": "t", "title": "x", "v": 1}
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    assert (
        fingerprint("t", "s", "x", {"db": "primary"})
        == hashlib.sha256(canonical.encode()).hexdigest()
    )


def test_mapping_order_does_not_matter():
    a = fingerprint("t", "s", "x", {"a": "1", "b": "2"})
    assert a == fingerprint("t", "s", "x", {"b": "2", "a": "1"})


def test_every_part_changes_the_fingerprint():
    base = fingerprint("t", "s", "x", {"a": "1"})
    variants = [
        fingerprint("t2", "s", "x", {"a": "1"}),
        fingerprint("t", "s2", "x", {"a": "1"}),
        fingerprint("t", "s", "X", {"a": "1"}),
        fingerprint("t", "s", "x", {"a": "2"}),
        fingerprint("t", "s", "x"),
    ]
    assert len({base, *variants}) == 6


def test_parts_cannot_be_shifted_into_each_other():
    assert fingerprint("a", "bc", "d") != fingerprint("ab", "c", "d")


def test_tag_identity_is_order_free_and_keeps_every_value():
    assert tag_identity([]) == {}
    assert tag_identity(["host=db-1", "db", "env:prod"]) == {
        "host": "db-1",
        "db": "true",
        "env": "prod",
    }
    assert tag_identity(["k=2", "k=1"]) == tag_identity(["k=1", "k=2"]) == {"k": "1,2"}
    assert tag_identity(["k=1", "k=2"]) != tag_identity(["k=2"])
