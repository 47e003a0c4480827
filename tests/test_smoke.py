from actors import SharedContextStore


async def test_create_and_get(store: SharedContextStore) -> None:
    eid = await store.create_context("./proj", ["documentation"])
    await store.store_original_analysis(
        files_analyzed=10, metrics={"complexity": 3.5}, issues=[], improvements=[{"type": "d"}]
    )
    ctx = await store.get_context()
    assert ctx.evolution_id == eid
    assert ctx.original_analysis["files_analyzed"] == 10
