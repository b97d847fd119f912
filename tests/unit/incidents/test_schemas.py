from hypothesis import given
from hypothesis import strategies as st

from incidents.schemas import MetricPoint, series_key, split_series, tenant_of

names = st.text(min_size=1, max_size=12).filter(lambda t: "\n" not in t and "\0" not in t)


@given(names, st.dictionaries(names, names, max_size=4), names)
def test_series_key_round_trips_through_split_series(measurement, tags, field):
    sorted_tags = tuple(sorted(tags.items()))
    key = series_key(measurement, sorted_tags, field)
    assert split_series(key) == (measurement, dict(sorted_tags), field)


def test_series_key_is_canonical_line_protocol_style():
    assert series_key("cpu", (("host", "a"), ("region", "eu")), "usage") == (
        "cpu,host=a,region=eu usage"
    )
    assert series_key("my cpu", (("k", "a,b"),), "f=x") == "my\\ cpu,k=a\\,b f\\=x"


def test_tenant_defaults_and_comes_from_the_tenant_tag():
    assert tenant_of(()) == "default"
    assert tenant_of((("host", "a"), ("tenant", "acme"))) == "acme"
    p = MetricPoint("cpu", (("tenant", "acme"),), "u", 1.0, 5_000_000_000)
    assert p.tenant == "acme" and p.timestamp_s == 5.0
