async def run_memory(tmp, *, quick, full):
    return []
