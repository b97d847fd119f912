"""Category corrections on a real SQLite file: stored, read per tenant, oldest first, bounded."""

import pytest

from connectors.classifier_store import ClassifierStore
from connectors.store import Store
from incidents.classification import CategoryCorrection
from incidents.schemas import Category


@pytest.fixture
def corrections(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    store.migrate()
    yield ClassifierStore(store)
    store.close()


def correction(title: str, category: Category, tenant: str = "acme", **kw) -> CategoryCorrection:
    return CategoryCorrection(
        tenant=tenant, title=title, description="", labels=(), category=category, **kw
    )


def test_a_correction_round_trips(corrections):
    stored = CategoryCorrection(
        tenant="acme",
        title="Druckerwarteschlange blockiert",
        description="Aufträge hängen",
        labels=("printer", "site"),
        category=Category.APPLICATION,
        previous=Category.OTHER,
        incident_id="5f0c1c52-6a8e-4a53-9d4e-1d2f7d1b2a10",
        actor="responder",
    )
    corrections.add_correction(stored)
    assert corrections.corrections("acme") == [stored]


def test_corrections_are_per_tenant_and_oldest_first(corrections):
    corrections.add_correction(correction("a", Category.NETWORK))
    corrections.add_correction(correction("b", Category.STORAGE, tenant="globex"))
    corrections.add_correction(correction("c", Category.MEMORY))
    assert [c.title for c in corrections.corrections("acme")] == ["a", "c"]
    assert [c.title for c in corrections.corrections("globex")] == ["b"]
    assert corrections.corrections("initech") == []


def test_only_the_newest_corrections_are_read(corrections):
    for i in range(5):
        corrections.add_correction(correction(f"t{i}", Category.COMPUTE))
    assert [c.title for c in corrections.corrections("acme", limit=2)] == ["t3", "t4"]


def test_an_over_long_title_is_cut_to_the_column(corrections):
    corrections.add_correction(correction("x" * 600, Category.OTHER))
    assert corrections.corrections("acme")[0].title == "x" * 500
