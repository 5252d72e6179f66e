"""The store's layout version: written into a new store, and unknown versions refused."""

from __future__ import annotations

import json

import pytest

from archiver.errors import LayoutVersionError, StoreError
from archiver.store import LAYOUT_VERSION, LocalStore, ensure_layout
from archiver.store.base import LAYOUT_KEY
from tests.store.conftest import PutFn


def test_ensure_layout_writes_the_version_into_a_new_store(store: LocalStore) -> None:
    assert ensure_layout(store, create=True) == LAYOUT_VERSION

    assert json.loads(store.get(LAYOUT_KEY)) == {"layout": 1, "written_by": "city-archiver"}
    assert ensure_layout(store, create=False) == LAYOUT_VERSION
    assert ensure_layout(store, create=True) == LAYOUT_VERSION  # idempotent


def test_ensure_layout_refuses_an_uninitialised_store_unless_asked_to_create(
    store: LocalStore,
) -> None:
    with pytest.raises(StoreError, match="not initialised") as caught:
        ensure_layout(store, create=False)

    assert not isinstance(caught.value, LayoutVersionError)
    assert "archiver catalog upgrade" in str(caught.value)
    assert not store.exists(LAYOUT_KEY)


@pytest.mark.parametrize("content", [b'{"layout": 999, "written_by": "the future"}', b"999\n"])
def test_ensure_layout_refuses_a_version_it_does_not_know(
    store: LocalStore, put: PutFn, content: bytes
) -> None:
    put(LAYOUT_KEY, content)

    for create in (False, True):
        with pytest.raises(LayoutVersionError, match=r"layout version 999.*upgrade the archiver"):
            ensure_layout(store, create=create)


@pytest.mark.parametrize("content", [b"", b"not json", b'{"layout": "1"}', b"true", b"\xff"])
def test_ensure_layout_refuses_an_unreadable_version(
    store: LocalStore, put: PutFn, content: bytes
) -> None:
    put(LAYOUT_KEY, content)

    with pytest.raises(LayoutVersionError, match="unreadable"):
        ensure_layout(store, create=True)


def test_a_bare_version_number_is_accepted(store: LocalStore, put: PutFn) -> None:
    put(LAYOUT_KEY, b"1\n")
    assert ensure_layout(store, create=False) == 1
