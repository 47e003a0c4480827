async def run_recovery(tmp, *, quick, big, full):
    return []
