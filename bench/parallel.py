async def run_parallel(tmp, *, quick):
    return []
